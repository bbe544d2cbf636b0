// Purpose: the top clusters by score, with their size, actions, reasons and top evidence:
//   the identifiers shared by the most members (as Label:value (members)); supernode
//   identifiers (shared too widely to mean anything) are left out of the evidence.
// Param limit (int, default 10): the most clusters returned.
// Param evidence (int, default 3): identifiers listed per cluster.
MATCH (c:Cluster)
WITH c
ORDER BY c.score DESC, c.cluster_id
LIMIT $limit
CALL (c) {
  MATCH (c)<-[:IN_CLUSTER]-(a:Account)-->(i:PaymentMethod|CardBin|Mailbox|EmailDomain|IP|Subnet|Device|UserAgent|PromptTemplate)
  WHERE coalesce(i.is_supernode, false) = false
  WITH i, count(DISTINCT a) AS members
  WHERE members > 1
  WITH i, members
  ORDER BY members DESC, labels(i)[0], i.value
  LIMIT $evidence
  RETURN collect(labels(i)[0] + ':' + i.value + ' (' + toString(members) + ')') AS top_evidence
}
RETURN c.cluster_id AS cluster_id,
       c.score AS score,
       c.size AS size,
       c.n_suspend AS n_suspend,
       c.n_review AS n_review,
       top_evidence,
       c.reasons AS reasons
ORDER BY score DESC, cluster_id
