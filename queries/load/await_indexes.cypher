// Purpose: wait until every index (and constraint-backing index) is online, so the loader's
//   MERGEs use them from the first batch.
CALL db.awaitIndexes(300)
