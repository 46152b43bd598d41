"""Entities the simulation tests (and bench_simulation) run."""
