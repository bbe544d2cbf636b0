// Purpose: the accounts that hold an embedding vector, with the vector's hash
//   (embedding_hash), for the incremental load to compare with the run's embeddings.
//   One row whose list holds an [account_id, hash] pair per account.
MATCH (a:Account) WHERE a.embedding IS NOT NULL
RETURN collect([a.account_id, a.embedding_hash]) AS rows
