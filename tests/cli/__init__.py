"""Tests of the command line (pachytype check, pachytype lock)."""
