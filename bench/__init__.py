"""Benchmarks of TaskManager; results are recorded in docs/performance.md."""
