"""Tests of the codec (values to bytes and back)."""
