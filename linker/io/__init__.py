"""Reading, validating and writing the tables of a dataset."""
