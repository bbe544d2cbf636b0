// Purpose: write one batch of (:Account)-[:USED_IP]->(:IP) relationships from the
//   observations of kind `ip` (MERGE, so re-running a batch changes nothing).
// Param rows (list, required): maps with account_id, value, first_seen, last_seen, count.
UNWIND $rows AS row
MATCH (a:Account {account_id: row.account_id})
MATCH (i:IP {value: row.value})
MERGE (a)-[r:USED_IP]->(i)
SET r.first_seen = row.first_seen,
    r.last_seen = row.last_seen,
    r.count = row.count
