// Purpose: the accounts nearest to one account by graph embedding (Account.embedding, cosine
//   similarity through the account_embedding vector index; written by `linker neo4j load` when
//   the run has embeddings.parquet). Proximity is a lead for review, not evidence: check the
//   identifiers shared with ring_around_account.
// Param account_id (string, required): the account whose neighbours are wanted.
// Param limit (int, default 10): the most accounts returned.
MATCH (a:Account {account_id: $account_id})
WHERE a.embedding IS NOT NULL
CALL db.index.vector.queryNodes('account_embedding', toInteger($limit) + 1, a.embedding)
YIELD node AS b, score
WITH a, b, score
WHERE b <> a
RETURN b.account_id AS account_id,
       score AS similarity,
       b.action AS action,
       b.cluster_id AS cluster_id,
       b.score AS account_score
ORDER BY similarity DESC, account_id
LIMIT toInteger($limit)
