"""Scenarios for `pachytype simulate`:

pachytype simulate examples.tcp.scenarios:naive --exhaust --faults reorder
pachytype simulate examples.tcp.scenarios:reliable --exhaust --faults drop,duplicate,reorder
"""

from __future__ import annotations

from examples.tcp import refs
from examples.tcp.stream import Chunk
from pachytype import Envelope

WORDS = ("hello,", " world", "!")


def naive() -> list[Envelope[int]]:
    """The three chunks through the proxy to a screen."""
    screen = refs.screen("s")
    return [refs.proxy("s").relay(chunk=Chunk(w), to=screen) for w in WORDS]


def reliable() -> list[Envelope[object]]:
    """The three chunks written to a numbering, resending client."""
    return [refs.client("s").write(text=w) for w in WORDS]
