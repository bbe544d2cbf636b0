// Purpose: write one batch of (:Account)-[:IN_CLUSTER]->(:Cluster) relationships from the
//   cluster_id column of scores.parquet.
// Param rows (list, required): maps with account_id and cluster_id.
UNWIND $rows AS row
MATCH (a:Account {account_id: row.account_id})
MERGE (c:Cluster {cluster_id: row.cluster_id})
MERGE (a)-[:IN_CLUSTER]->(c)
