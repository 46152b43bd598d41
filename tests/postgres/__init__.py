"""Tests of the Postgres ecosystem: nodes, faults, rolling deploys, schema, CLI."""
