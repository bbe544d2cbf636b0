// Purpose: create (:Account)-[:{rel_type}]->(:{label}) relationships that the database does
//   not hold yet (the incremental load's plan knows they are new): CREATE, not MERGE, in
//   concurrent transactions of $rows rows. A template: {rel_type} and {label} come from the
//   kind registry (linker/kinds.py). The same properties as load/relationship; a row whose
//   account or identifier is missing creates nothing, as there. The rows of a transaction that
//   failed are returned in failed (the loader writes them again with load/relationship's
//   MERGE). Column-wise parameters; runs in an implicit (auto-commit) transaction.
// Param account_id (list, required): the accounts.
// Param value (list, required): the identifier values.
// Param first_seen_s (list, required): first seen, epoch seconds.
// Param first_seen_ns (list, required): first seen, nanoseconds within the second.
// Param last_seen_s (list, required): last seen, epoch seconds.
// Param last_seen_ns (list, required): last seen, nanoseconds within the second.
// Param count (list, required): observation counts (requests for event kinds).
// Param load_hash (list, required): the row's content hash.
// Param rows (int, required): rows per inner transaction.
// Param concurrency (int, required): inner transactions run at once.
UNWIND range(0, size($account_id) - 1) AS i
CALL (i) {
  MATCH (a:Account {account_id: $account_id[i]})
  MATCH (n:{label} {value: $value[i]})
  CREATE (a)-[:{rel_type} {
    first_seen: CASE WHEN $first_seen_s[i] IS NULL THEN null
                ELSE datetime.fromepoch($first_seen_s[i], $first_seen_ns[i]) END,
    last_seen: CASE WHEN $last_seen_s[i] IS NULL THEN null
               ELSE datetime.fromepoch($last_seen_s[i], $last_seen_ns[i]) END,
    count: $count[i],
    load_hash: $load_hash[i]
  }]->(n)
} IN $concurrency CONCURRENT TRANSACTIONS OF $rows ROWS
  ON ERROR CONTINUE REPORT STATUS AS status
WITH i, status WHERE NOT status.committed
RETURN collect(i) AS failed, collect(DISTINCT status.errorMessage) AS errors
