// Purpose: one ring as a picture: the members of an account's cluster (that account first,
//   then by score, at most `members`), the LINKED relationships between them (each carrying
//   the run's link weight, shown as its caption, and its evidence) and the identifiers those
//   links cite (each link's `evidence` strongest, then the ones cited by the most drawn links,
//   at most `identifiers`), with the members' relationships to them. Supernodes and
//   feature-only kinds (card BIN, subnet, user agent, e-mail domain) are never link evidence,
//   so they are never drawn. One row of lists; in Neo4j Browser read it as a graph.
// Param account_id (string, default null): an account of the ring; null draws the ring of the highest-scoring account.
// Param members (int, default 12): the most accounts drawn.
// Param evidence (int, default 2): identifiers taken from each link's evidence, strongest first.
// Param identifiers (int, default 8): the most identifier nodes drawn.
MATCH (centre:Account)
WHERE centre.cluster_id IS NOT NULL
  AND ($account_id IS NULL OR centre.account_id = $account_id)
WITH centre
ORDER BY centre.score DESC, centre.account_id
LIMIT 1
MATCH (m:Account {cluster_id: centre.cluster_id})
WITH centre, m
ORDER BY CASE WHEN m = centre THEN 0 ELSE 1 END, m.score DESC, m.account_id
WITH centre, collect(m)[..toInteger($members)] AS ring
CALL (ring) {
  UNWIND ring AS a
  MATCH (a)-[link:LINKED]->(b:Account)
  WHERE b IN ring
  WITH link
  ORDER BY link.weight DESC, elementId(link)
  RETURN collect(link) AS links
}
CALL (links) {
  UNWIND links AS link
  UNWIND split(link.evidence, ';')[..toInteger($evidence)] AS token
  WITH link, startNode(link) AS a, endNode(link) AS b,
       substring(token, size(split(token, ':')[0]) + 1) AS cited
  MATCH (a)-->(i)<--(b)
  WHERE i.value = cited
  WITH i, count(DISTINCT link) AS citing
  ORDER BY citing DESC, i.value
  LIMIT toInteger($identifiers)
  RETURN collect(i) AS identifiers
}
CALL (ring, identifiers) {
  UNWIND ring AS a
  MATCH (a)-[uses]->(i)
  WHERE i IN identifiers
  RETURN collect(uses) AS uses
}
RETURN centre.cluster_id AS cluster_id,
       [a IN ring | a.account_id + ' (' + coalesce(a.action, 'none') + ')'] AS members,
       ring AS accounts,
       links,
       identifiers,
       uses
