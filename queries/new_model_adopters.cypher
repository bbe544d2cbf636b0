// Purpose: the accounts that used a model within `hours` of the model's first use by anyone
//   (a ring moving its traffic to a new model right after release shows here).
// Param model (string, default null): one model name; null lists every model.
// Param hours (int, default 24): the window after the model's first use.
// Param limit (int, default 1000): the most rows returned.
MATCH (m:Model)<-[u:USED_MODEL]-(a:Account)
WHERE ($model IS NULL OR m.name = $model)
  AND u.first_seen < m.first_seen + duration({hours: $hours})
RETURN m.name AS model,
       m.first_seen AS model_first_seen,
       a.account_id AS account_id,
       u.first_seen AS account_first_use,
       round(duration.inSeconds(m.first_seen, u.first_seen).seconds / 3600.0, 2)
         AS hours_after_first_use,
       u.requests AS requests,
       a.cluster_id AS cluster_id,
       a.action AS action
ORDER BY model, account_first_use, account_id
LIMIT toInteger($limit)
