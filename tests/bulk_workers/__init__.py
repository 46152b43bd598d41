"""Test package: a bulk of worker requests (tests/test_worker_shards.py)."""
