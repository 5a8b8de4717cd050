"""Privacy mechanisms: differential privacy, secure aggregation (``secagg``), leakage attacks."""
