// Purpose: write one batch of identifier nodes of one label (MERGE on the unique value).
//   A template: {label} is an identifier label of the kind registry (linker/kinds.py), filled
//   in by the loader; values travel as parameters. n_accounts counts the distinct accounts
//   linked to the value through any kind of that label; weight and is_supernode come from
//   the run's identifiers artefact (null when absent).
//   Column-wise parameters: row i of the batch is the i-th element of every list.
// Param value (list, required): identifier values (the key).
// Param n_accounts (list, required): distinct accounts per value.
// Param weight (list, required): rarity weight per value, or null.
// Param is_supernode (list, required): supernode flag per value, or null.
// Param load_hash (list, required): the row's content hash (a later load compares it).
UNWIND range(0, size($value) - 1) AS i
MERGE (n:{label} {value: $value[i]})
SET n.n_accounts = $n_accounts[i],
    n.weight = $weight[i],
    n.is_supernode = $is_supernode[i],
    n.load_hash = $load_hash[i]
