"""Entities the PostgreSQL fault tests and node tests run in separate node processes."""
