"""Fisher information of the teachers: estimation, aggregation, validation."""
