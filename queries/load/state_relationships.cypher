// Purpose: what the database holds of one relationship type: the keys of both ends and the
//   content hash (load_hash, null when the relationship has no properties) of every
//   relationship, for the incremental load to compare with the run. A template: {start},
//   {end} (labels), {start_key}, {end_key} (their key properties) and {rel_type} come from the
//   kind registry and the loader's schema. One row whose list holds [start, end, hash] triples.
MATCH (a:{start})-[r:{rel_type}]->(b:{end})
RETURN collect([a.{start_key}, b.{end_key}, r.load_hash]) AS rows
