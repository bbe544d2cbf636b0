// Purpose: create (:Account)-[:IN_CLUSTER]->(:Cluster) relationships that the database does
//   not hold yet (the incremental load's plan knows they are new), in concurrent transactions
//   of $rows rows; the clusters step has written the Cluster nodes. The rows of a transaction
//   that failed are returned in failed (written again with load/in_cluster's MERGE).
//   Column-wise parameters; runs in an implicit (auto-commit) transaction.
// Param account_id (list, required): the accounts.
// Param cluster_id (list, required): their clusters.
// Param rows (int, required): rows per inner transaction.
// Param concurrency (int, required): inner transactions run at once.
UNWIND range(0, size($account_id) - 1) AS i
CALL (i) {
  MATCH (a:Account {account_id: $account_id[i]})
  MATCH (c:Cluster {cluster_id: $cluster_id[i]})
  CREATE (a)-[:IN_CLUSTER]->(c)
} IN $concurrency CONCURRENT TRANSACTIONS OF $rows ROWS
  ON ERROR CONTINUE REPORT STATUS AS status
WITH i, status WHERE NOT status.committed
RETURN collect(i) AS failed, collect(DISTINCT status.errorMessage) AS errors
