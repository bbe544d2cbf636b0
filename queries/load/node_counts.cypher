// Purpose: count the nodes of each label (for the load summary).
MATCH (n)
UNWIND labels(n) AS label
RETURN label, count(*) AS nodes
ORDER BY label
