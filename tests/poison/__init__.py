"""Entities that misbehave on request: loop forever, sleep, run long."""
