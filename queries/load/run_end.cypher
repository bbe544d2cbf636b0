// Purpose: mark the load recorded on the (:LinkerRun) node finished, with its time.
// Param run_id (string, required): the run's id, as given to load/run_begin, or null.
MATCH (r:LinkerRun)
WHERE r.run_id IS NULL AND $run_id IS NULL OR r.run_id = $run_id
SET r.complete = true,
    r.loaded_at = datetime()
