// Purpose: one cluster's members in signup order: when each signed up, the minutes since the
//   member before it (a burst is a run of small gaps), its action and score, and the models
//   it used in order of first use. A table; the Browser guide's "its timeline" step.
// Param cluster_id (string, default null): the cluster, e.g. C-0017; null takes the highest-scoring cluster.
// Param limit (int, default 50): the most members listed.
MATCH (top:Cluster)
WHERE $cluster_id IS NULL OR top.cluster_id = $cluster_id
WITH top
ORDER BY top.score DESC, top.cluster_id
LIMIT 1
MATCH (top)<-[:IN_CLUSTER]-(a:Account)
WITH top, a
ORDER BY a.created_at, a.account_id
WITH top, collect(a) AS members
UNWIND range(0, size(members) - 1) AS k
WITH top, k, members[k] AS a, CASE WHEN k = 0 THEN null ELSE members[k - 1] END AS before
CALL (a) {
  OPTIONAL MATCH (a)-[u:USED_MODEL]->(m:Model)
  WITH m, u
  ORDER BY u.first_seen, m.name
  RETURN [name IN collect(m.name) WHERE name IS NOT NULL] AS models
}
RETURN top.cluster_id AS cluster_id,
       a.account_id AS account_id,
       a.created_at AS signed_up,
       CASE WHEN before IS NULL THEN null
            ELSE round(duration.inSeconds(before.created_at, a.created_at).seconds / 60.0, 1)
       END AS minutes_after_previous,
       a.action AS action,
       a.score AS score,
       models
ORDER BY k
LIMIT toInteger($limit)
