// Purpose: write one batch of (:Model) nodes; first_seen is the model's first use in
//   tables/events.parquet (over all accounts).
//   Column-wise parameters: row i of the batch is the i-th element of every list.
// Param name (list, required): model names (the key).
// Param first_seen_s (list, required): first use, epoch seconds.
// Param first_seen_ns (list, required): first use, nanoseconds within the second.
// Param load_hash (list, required): the row's content hash (a later load compares it).
UNWIND range(0, size($name) - 1) AS i
MERGE (m:Model {name: $name[i]})
SET m.first_seen = CASE WHEN $first_seen_s[i] IS NULL THEN null
                        ELSE datetime.fromepoch($first_seen_s[i], $first_seen_ns[i]) END,
    m.load_hash = $load_hash[i]
