"""Benchmarks of hardway.cloud (run with `make bench`; results in docs/benchmarks.md)."""
