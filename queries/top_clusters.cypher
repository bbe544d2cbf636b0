// Purpose: the top clusters by score, with their size, actions, reasons and top evidence:
//   the linking identifiers shared by the most members (as
//   Label:value (members)); supernodes (shared too widely to mean anything) and feature-only
//   kinds (weight 0: card BIN, subnet, user agent, e-mail domain) link nobody and are left out.
// Param limit (int, default 10): the most clusters returned.
// Param evidence (int, default 3): identifiers listed per cluster.
MATCH (c:Cluster)
WITH c
ORDER BY c.score DESC, c.cluster_id
LIMIT toInteger($limit)
CALL (c) {
  MATCH (c)<-[:IN_CLUSTER]-(a:Account)-->(i:PaymentMethod|BillingCustomer|Mailbox|EmailPattern|Device|IP|PromptTemplate|CardBin|EmailDomain|Subnet|UserAgent)
  WHERE coalesce(i.is_supernode, false) = false AND coalesce(i.weight, 1.0) > 0
  WITH i, count(DISTINCT a) AS members
  WHERE members > 1
  WITH i, members
  ORDER BY members DESC, labels(i)[0], i.value
  LIMIT toInteger($evidence)
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
