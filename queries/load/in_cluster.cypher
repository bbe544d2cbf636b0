// Purpose: write one batch of (:Account)-[:IN_CLUSTER]->(:Cluster) relationships from the
//   cluster_id column of scores.parquet.
//   Column-wise parameters: row i of the batch is the i-th element of every list.
// Param account_id (list, required): the accounts.
// Param cluster_id (list, required): their clusters.
UNWIND range(0, size($account_id) - 1) AS i
MATCH (a:Account {account_id: $account_id[i]})
MERGE (c:Cluster {cluster_id: $cluster_id[i]})
MERGE (a)-[:IN_CLUSTER]->(c)
