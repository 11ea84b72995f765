"""Synthetic LHEO offers for the demo, the tests and the benchmark (not production code)."""
