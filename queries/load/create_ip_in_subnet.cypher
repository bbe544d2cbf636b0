// Purpose: create (:IP)-[:IN_SUBNET]->(:Subnet) relationships that the database does not hold
//   yet (the incremental load's plan knows they are new), in concurrent transactions of $rows
//   rows. The rows of a transaction that failed are returned in failed (written again with
//   load/ip_in_subnet's MERGE). Column-wise parameters; runs in an implicit transaction.
// Param ip (list, required): IP values.
// Param subnet (list, required): their subnets.
// Param rows (int, required): rows per inner transaction.
// Param concurrency (int, required): inner transactions run at once.
UNWIND range(0, size($ip) - 1) AS i
CALL (i) {
  MATCH (n:IP {value: $ip[i]})
  MATCH (s:Subnet {value: $subnet[i]})
  CREATE (n)-[:IN_SUBNET]->(s)
} IN $concurrency CONCURRENT TRANSACTIONS OF $rows ROWS
  ON ERROR CONTINUE REPORT STATUS AS status
WITH i, status WHERE NOT status.committed
RETURN collect(i) AS failed, collect(DISTINCT status.errorMessage) AS errors
