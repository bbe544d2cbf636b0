// Purpose: create (:Account)-[:USED_MODEL]->(:Model) relationships that the database does not
//   hold yet (the incremental load's plan knows they are new): CREATE, not MERGE, in concurrent
//   transactions of $rows rows, with the properties of load/used_model. The rows of a
//   transaction that failed are returned in failed (written again with load/used_model).
//   Column-wise parameters; runs in an implicit (auto-commit) transaction.
// Param account_id (list, required): the accounts.
// Param model (list, required): the models.
// Param first_seen_s (list, required): first use, epoch seconds.
// Param first_seen_ns (list, required): first use, nanoseconds within the second.
// Param last_seen_s (list, required): last use, epoch seconds.
// Param last_seen_ns (list, required): last use, nanoseconds within the second.
// Param requests (list, required): total requests.
// Param load_hash (list, required): the row's content hash.
// Param rows (int, required): rows per inner transaction.
// Param concurrency (int, required): inner transactions run at once.
UNWIND range(0, size($account_id) - 1) AS i
CALL (i) {
  MATCH (a:Account {account_id: $account_id[i]})
  MATCH (m:Model {name: $model[i]})
  CREATE (a)-[:USED_MODEL {
    first_seen: CASE WHEN $first_seen_s[i] IS NULL THEN null
                ELSE datetime.fromepoch($first_seen_s[i], $first_seen_ns[i]) END,
    last_seen: CASE WHEN $last_seen_s[i] IS NULL THEN null
               ELSE datetime.fromepoch($last_seen_s[i], $last_seen_ns[i]) END,
    requests: $requests[i],
    load_hash: $load_hash[i]
  }]->(m)
} IN $concurrency CONCURRENT TRANSACTIONS OF $rows ROWS
  ON ERROR CONTINUE REPORT STATUS AS status
WITH i, status WHERE NOT status.committed
RETURN collect(i) AS failed, collect(DISTINCT status.errorMessage) AS errors
