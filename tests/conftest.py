"""Suite-wide settings for hypothesis (loaded before any test module, so the
`settings(...)` objects the tests build inherit them).

The `explain` phase is left out. It runs only after a failure is found and
shrunk, to add "the test sometimes passed when these parts varied" notes to
the report: it asserts nothing, and it re-runs the failing test hundreds of
times. Tests that expect hypothesis to find a failure (a lossy network
losing money, an activation error's trace) spent ~90% of their time there
(tests/simulation/test_stateful.py: 79 s -> 7 s). For those notes on a real
failure, run `pytest --hypothesis-profile=explain`.
"""

from __future__ import annotations

from hypothesis import Phase, settings

settings.register_profile("suite", phases=[p for p in Phase if p is not Phase.explain])
settings.register_profile("explain", phases=list(Phase))
settings.load_profile("suite")
