// Purpose: create identifier nodes of one label that the database does not hold yet (the
//   incremental load's plan knows they are new), in concurrent transactions of $rows rows.
//   A template: {label} is an identifier label of the kind registry (linker/kinds.py); values
//   travel as parameters. The same properties as load/identifier; the uniqueness constraint
//   on value rejects a node that exists after all (that transaction's rows are reported in
//   failed and written again with load/identifier's MERGE). Column-wise parameters.
//   Runs in an implicit (auto-commit) transaction: CALL ... IN TRANSACTIONS needs one.
// Param value (list, required): identifier values (the key).
// Param n_accounts (list, required): distinct accounts per value.
// Param weight (list, required): rarity weight per value, or null.
// Param is_supernode (list, required): supernode flag per value, or null.
// Param load_hash (list, required): the row's content hash.
// Param rows (int, required): rows per inner transaction.
// Param concurrency (int, required): inner transactions run at once.
UNWIND range(0, size($value) - 1) AS i
CALL (i) {
  CREATE (:{label} {
    value: $value[i],
    n_accounts: $n_accounts[i],
    weight: $weight[i],
    is_supernode: $is_supernode[i],
    load_hash: $load_hash[i]
  })
} IN $concurrency CONCURRENT TRANSACTIONS OF $rows ROWS
  ON ERROR CONTINUE REPORT STATUS AS status
WITH i, status WHERE NOT status.committed
RETURN collect(i) AS failed, collect(DISTINCT status.errorMessage) AS errors
