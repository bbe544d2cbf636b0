// Purpose: the cosine vector index on Account.embedding that nearest_accounts.cypher searches
//   (Neo4j 5.13+), created idempotently. The loader passes the vectors' length, an int it
//   checked to be in 1..4096.
// Param dimensions (int, required): the length of every Account.embedding vector.
CREATE VECTOR INDEX account_embedding IF NOT EXISTS
FOR (a:Account) ON a.embedding
OPTIONS {indexConfig: {`vector.dimensions`: $dimensions, `vector.similarity_function`: 'cosine'}}
