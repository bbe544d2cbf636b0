// Purpose: create the graph's uniqueness constraints and indexes, idempotently (IF NOT EXISTS).
//   Every MERGE key of the loader is backed by one of these constraints (identifier labels'
//   constraints come from load/identifier_constraint, one per label of the kind registry),
//   which also makes MERGE race-free and keeps a re-run from creating duplicates.
//   Statements end with `;`.
CREATE CONSTRAINT account_id_unique IF NOT EXISTS FOR (n:Account) REQUIRE n.account_id IS UNIQUE;
CREATE CONSTRAINT cluster_id_unique IF NOT EXISTS FOR (n:Cluster) REQUIRE n.cluster_id IS UNIQUE;
CREATE CONSTRAINT model_name_unique IF NOT EXISTS FOR (n:Model) REQUIRE n.name IS UNIQUE;
CREATE INDEX account_action IF NOT EXISTS FOR (n:Account) ON (n.action);
CREATE INDEX account_cluster_id IF NOT EXISTS FOR (n:Account) ON (n.cluster_id);
CREATE INDEX account_created_at IF NOT EXISTS FOR (n:Account) ON (n.created_at);
CREATE INDEX cluster_score IF NOT EXISTS FOR (n:Cluster) ON (n.score);
