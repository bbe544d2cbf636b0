// Purpose: count the nodes of each label (for the load summary); the
//   LinkerRun bookkeeping node is not part of the run's graph.
MATCH (n) WHERE NOT n:LinkerRun
UNWIND labels(n) AS label
RETURN label, count(*) AS nodes
ORDER BY label
