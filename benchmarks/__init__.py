"""Benchmarks of ticketflow (run from the repo root, e.g. `python -m benchmarks.bench_training`)."""
