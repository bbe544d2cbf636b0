// Purpose: write one batch of (:Account)-[:LINKED]->(:Account) relationships: the run's
//   evidence links inside clusters (links artefact), with the summed weight and the
//   strongest identifiers behind each. A ring is drawn as accounts joined by weighted
//   evidence. account_a < account_b; MERGE, so re-running a batch changes nothing.
//   Column-wise parameters: row i of the batch is the i-th element of every list.
// Param account_a (list, required): the first account of each link.
// Param account_b (list, required): the second account.
// Param weight (list, required): the link's summed evidence weight.
// Param evidence (list, required): kind:value;kind:value ... strongest first.
// Param load_hash (list, required): the row's content hash (a later load compares it).
UNWIND range(0, size($account_a) - 1) AS i
MATCH (a:Account {account_id: $account_a[i]})
MATCH (b:Account {account_id: $account_b[i]})
MERGE (a)-[r:LINKED]->(b)
SET r.weight = $weight[i],
    r.evidence = $evidence[i],
    r.load_hash = $load_hash[i]
