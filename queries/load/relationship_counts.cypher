// Purpose: count the relationships of each type (for the load summary).
MATCH ()-[r]->()
RETURN type(r) AS type, count(*) AS relationships
ORDER BY type
