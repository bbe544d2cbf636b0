// Purpose: one cluster's identifiers ranked by how many of its members share them, with how
//   many accounts outside the cluster also use them (high inside, low outside = strong).
// Param cluster_id (string, required): the cluster, e.g. C-0017.
// Param limit (int, default 50): the most identifiers returned.
MATCH (c:Cluster {cluster_id: $cluster_id})<-[:IN_CLUSTER]-(a:Account)-[r]->(i:PaymentMethod|CardBin|Mailbox|EmailDomain|IP|Subnet|Device|UserAgent|PromptTemplate)
WITH c, i, count(DISTINCT a) AS members, collect(DISTINCT type(r)) AS via
RETURN labels(i)[0] AS kind,
       i.value AS value,
       members,
       c.size AS cluster_size,
       i.n_accounts AS accounts_total,
       i.n_accounts - members AS outside_cluster,
       via
ORDER BY members DESC, outside_cluster, kind, value
LIMIT $limit
