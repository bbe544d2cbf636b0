// Purpose: write one batch of (:Account)-[:HAS_MAILBOX]->(:Mailbox) relationships from the
//   observations of kind `mailbox` (MERGE, so re-running a batch changes nothing).
// Param rows (list, required): maps with account_id, value, first_seen, last_seen, count.
UNWIND $rows AS row
MATCH (a:Account {account_id: row.account_id})
MATCH (i:Mailbox {value: row.value})
MERGE (a)-[r:HAS_MAILBOX]->(i)
SET r.first_seen = row.first_seen,
    r.last_seen = row.last_seen,
    r.count = row.count
