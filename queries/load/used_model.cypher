// Purpose: write one batch of (:Account)-[:USED_MODEL]->(:Model) relationships: an account's
//   first and last use of a model and its total requests, from tables/events.parquet.
// Param rows (list, required): maps with account_id, model, first_seen, last_seen, requests.
UNWIND $rows AS row
MATCH (a:Account {account_id: row.account_id})
MATCH (m:Model {name: row.model})
MERGE (a)-[r:USED_MODEL]->(m)
SET r.first_seen = row.first_seen,
    r.last_seen = row.last_seen,
    r.requests = row.requests
