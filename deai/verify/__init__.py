"""Verifiability: checks on what parties send before it can touch the global model."""
