// Purpose: every node with its labels, its key and all its properties, for the canonical
//   digest of the graph (linker.neo4j.loader.graph_digest): two databases hold the same graph
//   exactly when their digests match. Reads the whole graph: a verification tool, not an
//   analyst query.
MATCH (n)
RETURN labels(n) AS labels,
       coalesce(n.account_id, n.value, n.cluster_id, n.name) AS key,
       properties(n) AS properties
