// Purpose: write one batch of (:Account)-[:USED_MODEL]->(:Model) relationships: an account's
//   first and last use of a model and its total requests, from tables/events.parquet.
//   Column-wise parameters: row i of the batch is the i-th element of every list.
// Param account_id (list, required): the accounts.
// Param model (list, required): the models.
// Param first_seen_s (list, required): first use, epoch seconds.
// Param first_seen_ns (list, required): first use, nanoseconds within the second.
// Param last_seen_s (list, required): last use, epoch seconds.
// Param last_seen_ns (list, required): last use, nanoseconds within the second.
// Param requests (list, required): total requests.
// Param load_hash (list, required): the row's content hash (a later load compares it).
UNWIND range(0, size($account_id) - 1) AS i
MATCH (a:Account {account_id: $account_id[i]})
MATCH (m:Model {name: $model[i]})
MERGE (a)-[r:USED_MODEL]->(m)
SET r.first_seen = CASE WHEN $first_seen_s[i] IS NULL THEN null
                        ELSE datetime.fromepoch($first_seen_s[i], $first_seen_ns[i]) END,
    r.last_seen = CASE WHEN $last_seen_s[i] IS NULL THEN null
                       ELSE datetime.fromepoch($last_seen_s[i], $last_seen_ns[i]) END,
    r.requests = $requests[i],
    r.load_hash = $load_hash[i]
