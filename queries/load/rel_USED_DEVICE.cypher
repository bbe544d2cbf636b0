// Purpose: write one batch of (:Account)-[:USED_DEVICE]->(:Device) relationships from the
//   observations of kind `device` (MERGE, so re-running a batch changes nothing).
// Param rows (list, required): maps with account_id, value, first_seen, last_seen, count.
UNWIND $rows AS row
MATCH (a:Account {account_id: row.account_id})
MATCH (i:Device {value: row.value})
MERGE (a)-[r:USED_DEVICE]->(i)
SET r.first_seen = row.first_seen,
    r.last_seen = row.last_seen,
    r.count = row.count
