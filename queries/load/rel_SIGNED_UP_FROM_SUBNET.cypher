// Purpose: write one batch of (:Account)-[:SIGNED_UP_FROM_SUBNET]->(:Subnet) relationships from the
//   observations of kind `signup_subnet` (MERGE, so re-running a batch changes nothing).
// Param rows (list, required): maps with account_id, value, first_seen, last_seen, count.
UNWIND $rows AS row
MATCH (a:Account {account_id: row.account_id})
MATCH (i:Subnet {value: row.value})
MERGE (a)-[r:SIGNED_UP_FROM_SUBNET]->(i)
SET r.first_seen = row.first_seen,
    r.last_seen = row.last_seen,
    r.count = row.count
