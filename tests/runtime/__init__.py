"""Tests of the runtime's capabilities, run on every ecosystem."""
