// Purpose: the ring around one account: every other account within two hops of it through a
//   shared identifier (account -> identifier <- account), with the identifiers they share.
//   Supernode identifiers (shared so widely that they carry no signal, e.g. a carrier NAT IP)
//   and feature-only ones (weight 0: card BIN, subnet, user agent, e-mail domain) are skipped
//   unless include_supernodes is true. A table; ring_graph draws the ring.
// Param account_id (string, required): the account at the centre.
// Param include_supernodes (bool, default false): also walk through supernodes and feature-only identifiers (weight 0).
// Param limit (int, default 100): the most accounts returned.
MATCH (a:Account {account_id: $account_id})-->(i:PaymentMethod|BillingCustomer|Mailbox|EmailPattern|Device|IP|PromptTemplate|CardBin|EmailDomain|Subnet|UserAgent)<--(b:Account)
WHERE b <> a AND ($include_supernodes
       OR (coalesce(i.is_supernode, false) = false AND coalesce(i.weight, 1.0) > 0))
WITH b, i
ORDER BY labels(i)[0], i.value
WITH b, collect(DISTINCT labels(i)[0] + ':' + i.value) AS shared
RETURN b.account_id AS account_id,
       size(shared) AS n_shared,
       shared,
       b.action AS action,
       b.cluster_id AS cluster_id,
       b.score AS score
ORDER BY n_shared DESC, account_id
LIMIT toInteger($limit)
