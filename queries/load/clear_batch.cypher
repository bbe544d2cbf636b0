// Purpose: delete up to $limit nodes (and their relationships) of the database; the loader's
//   --replace calls it until it returns 0, so no single transaction grows unbounded.
// Param limit (int, default 10000): nodes deleted per call.
MATCH (n)
WITH n LIMIT $limit
DETACH DELETE n
RETURN count(*) AS deleted
