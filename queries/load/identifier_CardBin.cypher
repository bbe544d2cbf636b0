// Purpose: write one batch of (:CardBin) identifier nodes (MERGE on the unique value).
//   n_accounts counts the distinct accounts linked to the value through any kind that maps to
//   CardBin; weight and is_supernode come from identifiers.parquet (null when absent).
// Param rows (list, required): maps with value, n_accounts, weight, is_supernode.
UNWIND $rows AS row
MERGE (n:CardBin {value: row.value})
SET n.n_accounts = row.n_accounts,
    n.weight = row.weight,
    n.is_supernode = row.is_supernode
