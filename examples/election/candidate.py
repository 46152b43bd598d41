"""Two candidates for leader, each too polite: a candidate that hears a
rival's claim while claiming itself backs off, and claims again a second
later. Both back off, both retry at the same moment, both back off again:
a livelock, no leader ever, though every step looks reasonable and many
orders do elect one. `Simulation.exhaust(..., eventually=has_leader)` finds
the cycle; `Start(tie_break=True)` is the fix: when contested, the lower
id stands firm and the higher one grants at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, assert_never

from attrs import evolve, frozen

from examples.election import refs
from pachytype import Activation, Address, Entity

RETRY_AFTER = timedelta(seconds=1)

Phase = Literal["idle", "claiming", "backing off", "leader", "follower"]


@frozen
class Start:
    """Run for leader against `rival`; `tie_break`: the lower id stands firm."""

    rival: Address[CandidateMsg]
    tie_break: bool = False


@frozen
class Claim:
    """`candidate` wants to lead."""

    candidate: str


@frozen
class Grant:
    """The rival agrees: lead."""


@frozen
class Refuse:
    """The rival already leads."""


@frozen
class Retry:
    """A reminder to oneself: claim again after backing off."""


CandidateMsg = Start | Claim | Grant | Refuse | Retry


@frozen
class CandidateState:
    """Where a candidate is in the election."""

    me: str
    phase: Phase = "idle"
    rival: Address[CandidateMsg] | None = None
    tie_break: bool = False


class Candidate(Entity[str, CandidateMsg, CandidateState]):
    """One of two candidates for leader."""

    def init(self, id: str) -> CandidateState:
        return CandidateState(id)

    def activate(self, msg: CandidateMsg, state: CandidateState) -> Activation[CandidateState]:
        me = refs.candidate(state.me)
        match msg:
            case Start(rival=rival, tie_break=tie_break):
                claiming = evolve(state, phase="claiming", rival=rival, tie_break=tie_break)
                return [rival.post(Claim(state.me))], claiming
            case Claim(candidate=candidate):
                rival = refs.candidate(candidate)
                if state.phase == "leader":
                    return [rival.post(Refuse())], state
                contested = state.phase in ("claiming", "backing off")
                if contested and state.tie_break:
                    if state.me < candidate:
                        return [], state  # stand firm: the rival grants
                    return [rival.post(Grant())], evolve(state, phase="follower")
                if state.phase == "claiming":
                    # Polite: let the rival go first, try again later.
                    retry = me.retry().after(RETRY_AFTER)
                    return [retry], evolve(state, phase="backing off")
                return [rival.post(Grant())], evolve(state, phase="follower")
            case Grant():
                if state.phase == "claiming":
                    return [], evolve(state, phase="leader")
                return [], state
            case Refuse():
                return [], evolve(state, phase="follower")
            case Retry():
                if state.phase != "backing off" or state.rival is None:
                    return [], state
                return [state.rival.post(Claim(state.me))], evolve(state, phase="claiming")
            case _:
                assert_never(msg)
