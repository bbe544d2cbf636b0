// Purpose: write one batch of (:Cluster) nodes from clusters.parquet (MERGE on cluster_id).
//   Column-wise parameters: row i of the batch is the i-th element of every list.
// Param cluster_id (list, required): the clusters (the key).
// Param size (list, required): accounts per cluster.
// Param score (list, required): cluster scores.
// Param n_suspend (list, required): accounts to suspend per cluster.
// Param n_review (list, required): accounts to review per cluster.
// Param reasons (list, required): the reasons text.
// Param load_hash (list, required): the row's content hash (a later load compares it).
UNWIND range(0, size($cluster_id) - 1) AS i
MERGE (c:Cluster {cluster_id: $cluster_id[i]})
SET c.size = $size[i],
    c.score = $score[i],
    c.n_suspend = $n_suspend[i],
    c.n_review = $n_review[i],
    c.reasons = $reasons[i],
    c.load_hash = $load_hash[i]
