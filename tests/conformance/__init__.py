"""Entities the shared conformance suite runs on every ecosystem."""
