"""Tests of the generator (codegen/): golden output, errors, model, lock and schema evolution."""
