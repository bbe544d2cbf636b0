// Purpose: the run the database holds, as the loader recorded it on the singleton
//   (:LinkerRun) node: run_id and as_of from the run's manifest, the run directory, when the
//   load finished (loaded_at) and whether it did (complete). No row when nothing was loaded.
MATCH (r:LinkerRun)
RETURN r.run_id AS run_id, r.as_of AS as_of, r.run_dir AS run_dir,
       r.loaded_at AS loaded_at, r.complete AS complete
LIMIT 1
