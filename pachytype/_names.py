"""Naming rules shared by the runtime and the generator (one place, so they agree)."""

from __future__ import annotations

import re

_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(name: str) -> str:
    """`PingPong` -> `ping_pong`, `HTTPServer` -> `http_server`, `Counter2` -> `counter2`."""
    return _BOUNDARY.sub("_", name).lower()
