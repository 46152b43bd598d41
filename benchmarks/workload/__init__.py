"""Entities the benchmarks drive: as small as an entity can be, so the
figures measure the runtime, not the user's code."""
