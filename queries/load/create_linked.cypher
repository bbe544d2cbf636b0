// Purpose: create (:Account)-[:LINKED]->(:Account) relationships that the database does not
//   hold yet (the incremental load's plan knows they are new): CREATE, not MERGE, in concurrent
//   transactions of $rows rows, with the properties of load/linked. The rows of a transaction
//   that failed are returned in failed (written again with load/linked).
//   Column-wise parameters; runs in an implicit (auto-commit) transaction.
// Param account_a (list, required): the first account of each link.
// Param account_b (list, required): the second account.
// Param weight (list, required): the link's summed evidence weight.
// Param evidence (list, required): kind:value;kind:value ... strongest first.
// Param load_hash (list, required): the row's content hash.
// Param rows (int, required): rows per inner transaction.
// Param concurrency (int, required): inner transactions run at once.
UNWIND range(0, size($account_a) - 1) AS i
CALL (i) {
  MATCH (a:Account {account_id: $account_a[i]})
  MATCH (b:Account {account_id: $account_b[i]})
  CREATE (a)-[:LINKED {weight: $weight[i], evidence: $evidence[i], load_hash: $load_hash[i]}]->(b)
} IN $concurrency CONCURRENT TRANSACTIONS OF $rows ROWS
  ON ERROR CONTINUE REPORT STATUS AS status
WITH i, status WHERE NOT status.committed
RETURN collect(i) AS failed, collect(DISTINCT status.errorMessage) AS errors
