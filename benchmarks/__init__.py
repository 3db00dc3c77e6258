"""Benchmark harnesses: ``python -m benchmarks TASK --root DATA ...`` (see benchmarks/README.md)."""
