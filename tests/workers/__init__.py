"""Tests of workers (pachytype/_worker.py, _worker_runner.py)."""
