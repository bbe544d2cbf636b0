// Purpose: write one batch of Account.embedding vectors (lists of floats) from
//   embeddings.parquet, on accounts the accounts step already merged. Column-wise parameters.
// Param account_id (list, required): the accounts (the key).
// Param embedding (list, required): one list of floats per account.
// Param embedding_hash (list, required): the vector's hash (a later load compares it).
UNWIND range(0, size($account_id) - 1) AS i
MATCH (a:Account {account_id: $account_id[i]})
SET a.embedding = $embedding[i],
    a.embedding_hash = $embedding_hash[i]
