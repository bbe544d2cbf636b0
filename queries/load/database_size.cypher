// Purpose: count the nodes and relationships of the whole database (from the count store, so
//   O(1)); the bulk importer refuses a non-empty database unless told to replace it.
CALL () { MATCH (n) RETURN count(n) AS nodes }
CALL () { MATCH ()-[r]->() RETURN count(r) AS relationships }
RETURN nodes, relationships
