// Purpose: one cluster's identifiers, the linking ones first (links: weight above 0 and not
//   a supernode; card BIN, subnet, user agent and e-mail domain are features that link
//   nobody), each group ranked by how many members share them, with how many accounts
//   outside the cluster also use them (high inside, low outside = strong).
//   Runs as a table; the Browser guide's "its evidence" step.
// Param cluster_id (string, default null): the cluster, e.g. C-0017; null takes the highest-scoring cluster.
// Param limit (int, default 50): the most identifiers returned.
MATCH (top:Cluster)
WHERE $cluster_id IS NULL OR top.cluster_id = $cluster_id
WITH top ORDER BY top.score DESC, top.cluster_id LIMIT 1
MATCH (c:Cluster {cluster_id: top.cluster_id})<-[:IN_CLUSTER]-(a:Account)-[r]->(i:PaymentMethod|BillingCustomer|Mailbox|EmailPattern|Device|IP|PromptTemplate|CardBin|EmailDomain|Subnet|UserAgent)
WITH c, i, count(DISTINCT a) AS members, collect(DISTINCT type(r)) AS via
WITH c, i, members, via,
     coalesce(i.weight, 1.0) > 0 AND coalesce(i.is_supernode, false) = false AS links
RETURN labels(i)[0] AS kind,
       i.value AS value,
       members,
       c.size AS cluster_size,
       i.n_accounts AS accounts_total,
       i.n_accounts - members AS outside_cluster,
       links,
       i.weight AS weight,
       via
ORDER BY links DESC, members DESC, outside_cluster, kind, value
LIMIT toInteger($limit)
