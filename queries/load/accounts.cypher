// Purpose: write one batch of (:Account) nodes (MERGE on account_id) with every contract
//   attribute of tables/accounts.parquet plus score, action, cluster_id, cluster_size and
//   reasons from scores.parquet. A null property is removed, so a re-run converges.
//   The action is also a label (:Suspend, :Review; none for the others) so that the
//   Browser style (GraSS styles by label) colours accounts by action; a rewrite removes
//   a stale one. linker.neo4j.loader.ACTION_LABELS names the same labels.
//   Column-wise parameters: row i of the batch is the i-th element of every list; created_at
//   travels as epoch seconds and nanoseconds (UTC).
// Param account_id (list, required): the accounts (the key).
// Param created_at_s (list, required): signup time, epoch seconds.
// Param created_at_ns (list, required): signup time, nanoseconds within the second.
// Param email (list, required): emails.
// Param signup_ip (list, required): signup IPs.
// Param device_id (list, required): signup devices.
// Param country (list, required): countries.
// Param billing_customer_id (list, required): billing customers.
// Param cluster_id (list, required): clusters from scores.parquet, or null.
// Param cluster_size (list, required): cluster sizes.
// Param score (list, required): scores in [0, 1].
// Param action (list, required): suspend, review or none.
// Param reasons (list, required): the reasons text.
// Param load_hash (list, required): the row's content hash (a later load compares it).
UNWIND range(0, size($account_id) - 1) AS i
MERGE (a:Account {account_id: $account_id[i]})
SET a.created_at = CASE WHEN $created_at_s[i] IS NULL THEN null
                        ELSE datetime.fromepoch($created_at_s[i], $created_at_ns[i]) END,
    a.email = $email[i],
    a.signup_ip = $signup_ip[i],
    a.device_id = $device_id[i],
    a.country = $country[i],
    a.billing_customer_id = $billing_customer_id[i],
    a.cluster_id = $cluster_id[i],
    a.cluster_size = $cluster_size[i],
    a.score = $score[i],
    a.action = $action[i],
    a.reasons = $reasons[i],
    a.load_hash = $load_hash[i]
REMOVE a:Suspend:Review
FOREACH (_ IN CASE WHEN $action[i] = 'suspend' THEN [1] ELSE [] END | SET a:Suspend)
FOREACH (_ IN CASE WHEN $action[i] = 'review' THEN [1] ELSE [] END | SET a:Review)
