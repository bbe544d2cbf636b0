// Purpose: write one batch of (:PaymentMethod) identifier nodes (MERGE on the unique value).
//   n_accounts counts the distinct accounts linked to the value through any kind that maps to
//   PaymentMethod; weight and is_supernode come from identifiers.parquet (null when absent).
//   Column-wise parameters: row i of the batch is the i-th element of every list.
// Param value (list, required): identifier values (the key).
// Param n_accounts (list, required): distinct accounts per value.
// Param weight (list, required): rarity weight per value, or null.
// Param is_supernode (list, required): supernode flag per value, or null.
UNWIND range(0, size($value) - 1) AS i
MERGE (n:PaymentMethod {value: $value[i]})
SET n.n_accounts = $n_accounts[i],
    n.weight = $weight[i],
    n.is_supernode = $is_supernode[i]
