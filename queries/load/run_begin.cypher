// Purpose: record, before the first write of a load, the run being loaded on the singleton
//   (:LinkerRun) node, marked incomplete: a load killed part-way is then never taken for a
//   finished one, and an older run is refused over it.
// Param run_id (string, required): the run's id (manifest run_id), or null.
// Param as_of (string, required): the latest time in the run's data (manifest as_of), or null.
// Param run_dir (string, required): the run directory.
MERGE (r:LinkerRun)
SET r.run_id = $run_id,
    r.as_of = $as_of,
    r.run_dir = $run_dir,
    r.complete = false,
    r.loaded_at = null
