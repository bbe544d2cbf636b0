// Purpose: write one batch of (:Account)-[:HAS_EMAIL_DOMAIN]->(:EmailDomain) relationships from the
//   observations of kind `email_domain` (MERGE, so re-running a batch changes nothing).
// Param rows (list, required): maps with account_id, value, first_seen, last_seen, count.
UNWIND $rows AS row
MATCH (a:Account {account_id: row.account_id})
MATCH (i:EmailDomain {value: row.value})
MERGE (a)-[r:HAS_EMAIL_DOMAIN]->(i)
SET r.first_seen = row.first_seen,
    r.last_seen = row.last_seen,
    r.count = row.count
