// Purpose: write one batch of (:Account)-[:{rel_type}]->(:{label}) relationships from the
//   observations of one identifier kind (MERGE, so re-running a batch changes nothing).
//   A template: {rel_type} and {label} come from the kind registry (linker/kinds.py).
//   Column-wise parameters: row i of the batch is the i-th element of every list; timestamps
//   travel as epoch seconds and nanoseconds (UTC).
// Param account_id (list, required): the accounts.
// Param value (list, required): the identifier values.
// Param first_seen_s (list, required): first seen, epoch seconds.
// Param first_seen_ns (list, required): first seen, nanoseconds within the second.
// Param last_seen_s (list, required): last seen, epoch seconds.
// Param last_seen_ns (list, required): last seen, nanoseconds within the second.
// Param count (list, required): observation counts (requests for event kinds).
// Param load_hash (list, required): the row's content hash (a later load compares it).
UNWIND range(0, size($account_id) - 1) AS i
MATCH (a:Account {account_id: $account_id[i]})
MATCH (n:{label} {value: $value[i]})
MERGE (a)-[r:{rel_type}]->(n)
SET r.first_seen = CASE WHEN $first_seen_s[i] IS NULL THEN null
                   ELSE datetime.fromepoch($first_seen_s[i], $first_seen_ns[i]) END,
    r.last_seen = CASE WHEN $last_seen_s[i] IS NULL THEN null
                  ELSE datetime.fromepoch($last_seen_s[i], $last_seen_ns[i]) END,
    r.count = $count[i],
    r.load_hash = $load_hash[i]
