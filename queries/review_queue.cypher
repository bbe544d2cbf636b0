// Purpose: the review queue: accounts that share an identifier with a member of a flagged
//   cluster (one with at least one member whose action is suspend) but are neither flagged
//   themselves (action none) nor members of that cluster. Most shared identifiers first.
// Param include_supernodes (bool, default false): also count supernodes and feature-only identifiers (weight 0) as links.
// Param limit (int, default 100): the most rows returned.
MATCH (c:Cluster)<-[:IN_CLUSTER]-(:Account {action: 'suspend'})
WITH DISTINCT c
MATCH (c)<-[:IN_CLUSTER]-(m:Account)-->(i:PaymentMethod|BillingCustomer|Mailbox|EmailPattern|Device|IP|PromptTemplate|CardBin|EmailDomain|Subnet|UserAgent)<--(a:Account)
WHERE coalesce(a.action, 'none') = 'none'
  AND NOT EXISTS { (a)-[:IN_CLUSTER]->(c) }
  AND ($include_supernodes
       OR (coalesce(i.is_supernode, false) = false AND coalesce(i.weight, 1.0) > 0))
WITH a, c, i, m
ORDER BY labels(i)[0], i.value
WITH a, c,
     collect(DISTINCT labels(i)[0] + ':' + i.value) AS shared,
     count(DISTINCT m) AS members_linked
RETURN a.account_id AS account_id,
       a.score AS score,
       a.cluster_id AS own_cluster,
       c.cluster_id AS flagged_cluster,
       c.score AS cluster_score,
       members_linked,
       size(shared) AS n_shared,
       shared
ORDER BY n_shared DESC, members_linked DESC, cluster_score DESC, account_id, flagged_cluster
LIMIT toInteger($limit)
