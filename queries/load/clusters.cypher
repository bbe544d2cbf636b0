// Purpose: write one batch of (:Cluster) nodes from clusters.parquet (MERGE on cluster_id).
// Param rows (list, required): maps with cluster_id, size, score, n_suspend, n_review, reasons.
UNWIND $rows AS row
MERGE (c:Cluster {cluster_id: row.cluster_id})
SET c.size = row.size,
    c.score = row.score,
    c.n_suspend = row.n_suspend,
    c.n_review = row.n_review,
    c.reasons = row.reasons
