// Purpose: write one batch of (:IP)-[:IN_SUBNET]->(:Subnet) relationships (the /24 of an
//   IPv4 address, the /48 of an IPv6 one). Both nodes already exist; MERGE keeps it idempotent.
//   Column-wise parameters: row i of the batch is the i-th element of every list.
// Param ip (list, required): IP values.
// Param subnet (list, required): their subnets.
UNWIND range(0, size($ip) - 1) AS i
MATCH (n:IP {value: $ip[i]})
MATCH (s:Subnet {value: $subnet[i]})
MERGE (n)-[:IN_SUBNET]->(s)
