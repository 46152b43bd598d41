"""Scenarios for `pachytype simulate`:

pachytype simulate examples.rock_paper_scissors.scenarios:match --exhaust
"""

from __future__ import annotations

from examples.rock_paper_scissors import refs
from pachytype import Envelope


def match() -> list[Envelope[str | None]]:
    """Ann plays rock, Bob plays paper, in game "g1"."""
    game = refs.game("g1")
    return [
        refs.player("ann").play(me="ann", hand="rock", game=game),
        refs.player("bob").play(me="bob", hand="paper", game=game),
    ]
