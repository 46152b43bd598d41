"""Golden cases of `pachytype generate`: each directory is an input package and
its `refs.py` the expected output (see tests/codegen/test_golden.py)."""
