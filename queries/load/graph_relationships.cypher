// Purpose: every relationship with the labels and keys of its two end nodes, its type and
//   all its properties, for the canonical digest of the graph
//   (linker.neo4j.loader.graph_digest). Reads the whole graph.
MATCH (a)-[r]->(b)
RETURN labels(a) AS start_labels,
       coalesce(a.account_id, a.value, a.cluster_id, a.name) AS start_key,
       type(r) AS type,
       labels(b) AS end_labels,
       coalesce(b.account_id, b.value, b.cluster_id, b.name) AS end_key,
       properties(r) AS properties
