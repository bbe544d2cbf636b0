// Purpose: every node with its labels, its key and all its properties, for the canonical
//   digest of the graph (linker.neo4j.loader.graph_digest): two databases hold the same graph
//   exactly when their digests match. Reads the whole graph: a verification tool, not an
//   analyst query. The LinkerRun bookkeeping node (which run, loaded when) is
//   left out: it is not part of the run's graph.
MATCH (n) WHERE NOT n:LinkerRun
RETURN labels(n) AS labels,
       coalesce(n.account_id, n.value, n.cluster_id, n.name) AS key,
       properties(n) AS properties
