"""Tests of the examples (examples/)."""
