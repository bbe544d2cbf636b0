// Purpose: the uniqueness constraint on one identifier label's value (idempotent).
//   A template: {constraint} and {label} come from the kind registry (linker/kinds.py). Every
//   identifier MERGE of the loader is backed by one of these constraints.
CREATE CONSTRAINT {constraint} IF NOT EXISTS FOR (n:{label}) REQUIRE n.value IS UNIQUE
