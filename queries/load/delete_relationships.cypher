// Purpose: delete one batch of relationships of one type that the run being loaded no longer
//   has (or that the database holds twice: the loader writes them again). A template: the
//   labels {start} and {end}, their key properties {start_key} and {end_key}, and {rel_type}
//   come from the kind registry and the loader's schema. Column-wise parameters.
// Param start (list, required): the keys of the start nodes.
// Param end (list, required): the keys of the end nodes.
UNWIND range(0, size($start) - 1) AS i
MATCH (a:{start} {{start_key}: $start[i]})-[r:{rel_type}]->(b:{end} {{end_key}: $end[i]})
DELETE r
