"""Tests of the pure core (pachytype/_core/)."""
