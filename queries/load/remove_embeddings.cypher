// Purpose: remove the embedding vector (and its hash) of one batch of accounts that the run
//   being loaded has no vector for.
// Param account_id (list, required): the accounts.
UNWIND $account_id AS k
MATCH (a:Account {account_id: k})
REMOVE a.embedding, a.embedding_hash
