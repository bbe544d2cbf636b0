// Purpose: delete one batch of nodes of one label that the run being loaded no longer has,
//   with their relationships (DETACH DELETE). A template: {label} and its key property {key}
//   come from the kind registry and the loader's schema; keys travel as a parameter.
// Param key (list, required): the keys of the nodes to delete.
UNWIND $key AS k
MATCH (n:{label} {{key}: k})
DETACH DELETE n
