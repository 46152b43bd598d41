"""A worker whose effect is nothing: for timing the worker round trip
(entity -> worker -> result) in `benchmarks/bench_workers.py`."""
