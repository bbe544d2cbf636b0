// Purpose: what the database holds of one node label: every node's key and content hash
//   (load_hash, null for a node written without one), for the incremental load to compare
//   with the run. A template: {label} and its key property {key} come from the kind registry
//   and the loader's schema. One row whose list holds a [key, hash] pair per node.
MATCH (n:{label})
RETURN collect([n.{key}, n.load_hash]) AS rows
