"""Test package: a bulk of worker requests (tests/workers/test_shards.py)."""
