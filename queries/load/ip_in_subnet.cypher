// Purpose: write one batch of (:IP)-[:IN_SUBNET]->(:Subnet) relationships (the /24 of an
//   IPv4 address, the /48 of an IPv6 one). Both nodes already exist; MERGE keeps it idempotent.
// Param rows (list, required): maps with ip and subnet.
UNWIND $rows AS row
MATCH (i:IP {value: row.ip})
MATCH (s:Subnet {value: row.subnet})
MERGE (i)-[:IN_SUBNET]->(s)
