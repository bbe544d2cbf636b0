// Purpose: write one batch of (:Account) nodes (MERGE on account_id) with every contract
//   attribute of tables/accounts.parquet plus score, action, cluster_id, cluster_size and
//   reasons from scores.parquet. A null property is removed, so a re-run converges.
// Param rows (list, required): maps with account_id and props (a map of the properties).
UNWIND $rows AS row
MERGE (a:Account {account_id: row.account_id})
SET a += row.props
