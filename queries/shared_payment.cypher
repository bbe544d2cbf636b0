// Purpose: the accounts that share one payment fingerprint, oldest payment first, with their
//   billing customer, action and cluster (families share a card; rings share many).
// Param fingerprint (string, required): the payment fingerprint (PaymentMethod value).
MATCH (p:PaymentMethod {value: $fingerprint})<-[r:HAS_PAYMENT]-(a:Account)
RETURN a.account_id AS account_id,
       a.billing_customer_id AS billing_customer_id,
       r.first_seen AS payment_added,
       a.created_at AS created_at,
       a.action AS action,
       a.cluster_id AS cluster_id,
       a.score AS score
ORDER BY payment_added, account_id
