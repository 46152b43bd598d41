"""Scenarios for `pachytype simulate` and `Simulation.exhaust(..., eventually=has_leader)`:

pachytype simulate examples.election.scenarios:polite --exhaust
"""

from __future__ import annotations

from examples.election import refs
from examples.election.candidate import CandidateState
from pachytype import Envelope
from pachytype.simulation import Outcome


def polite() -> list[Envelope[CandidateState]]:
    """Ann and Bob run against each other; each backs off when contested."""
    ann, bob = refs.candidate("ann"), refs.candidate("bob")
    return [ann.start(rival=bob), bob.start(rival=ann)]


def tie_break() -> list[Envelope[CandidateState]]:
    """The fix: when both claim, the lower id (ann) stands firm."""
    ann, bob = refs.candidate("ann"), refs.candidate("bob")
    return [ann.start(rival=bob, tie_break=True), bob.start(rival=ann, tie_break=True)]


def has_leader(outcome: Outcome) -> bool:
    """Eventually exactly one candidate leads and the other follows."""
    phases = sorted(
        outcome.state(refs.candidate(name)).phase
        for name in ("ann", "bob")
        if refs.candidate(name) in outcome.states
    )
    return phases == ["follower", "leader"]
