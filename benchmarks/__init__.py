"""Benchmarks of msunet against the Keras reference (needs the bench extra)."""
