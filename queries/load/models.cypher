// Purpose: write one batch of (:Model) nodes; first_seen is the model's first use in
//   tables/events.parquet (over all accounts).
// Param rows (list, required): maps with name and first_seen.
UNWIND $rows AS row
MERGE (m:Model {name: row.name})
SET m.first_seen = row.first_seen
