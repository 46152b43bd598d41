"""Hypothesis stateful testing of a simulated system: generated sends,
generated delivery orders and faults, invariants checked after every step.

Subclass `SimulationMachine`, say what may be sent, and what must always
hold; hypothesis then interleaves sends, single deliveries (in any order the
network allows, with faults up to `faults`) and moves of the virtual clock,
and shrinks a failure to a short program of rules::

    from hypothesis import strategies as st
    from pachytype.simulation.stateful import SimulationMachine

    class Bank(SimulationMachine):
        registry = REGISTRY
        sends = st.builds(lambda who, n: account(who).deposit(amount=n), names, amounts)

        def check(self, outcome: Outcome) -> None:       # after every step
            assert all(s.balance >= 0 for s in balances(outcome))

        def settled(self, outcome: Outcome) -> None:     # once everything is delivered
            assert total(outcome) == self.deposited

    TestBank = Bank.TestCase

A failure raises `InvariantError` (or `SimulationError` if an activation
raises) with the whole trace of the machine's steps, and hypothesis prints
the rules that led there. Requires hypothesis (a test dependency).
"""

from __future__ import annotations

from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pachytype._address import Envelope
from pachytype._registry import Registry
from pachytype.simulation import _world
from pachytype.simulation._errors import check as check_invariant
from pachytype.simulation._explore import OnError, failure
from pachytype.simulation._faults import NO_FAULTS, Faults
from pachytype.simulation._trace import Kind, Outcome, Step, Trace
from pachytype.simulation._world import Context, World, apply, enabled

_WIDEST_CHOICE = 64
"""Choices are taken modulo the number of enabled events (as in `strategies`)."""


class SimulationMachine(RuleBasedStateMachine):
    """A hypothesis state machine over a simulated system (see the module).

    Class attributes to set: `registry`, `sends` (a strategy of envelopes
    sent from outside), and optionally `faults` (budgets for the whole
    run: drops, duplicates, reordering), `max_delay` (the longest clock
    move, in seconds) and `on_error` ("raise": an activation error fails
    the test; "dead_letter": the entity keeps its state and the machine
    goes on, as the other ecosystems do). Methods to override:
    `check(outcome)`, run after every step, and `settled(outcome)`, run at
    the end once everything in flight has been delivered. `self.trace` is
    every step so far, `self.sent` every envelope sent.
    """

    registry: ClassVar[Registry]
    sends: ClassVar[st.SearchStrategy[Envelope[Any]]]
    faults: ClassVar[Faults] = NO_FAULTS
    max_delay: ClassVar[float] = 60.0
    on_error: ClassVar[OnError] = "raise"

    def __init__(self) -> None:
        super().__init__()
        self._ctx = Context(self.registry)
        self._world = World.empty(self.faults)
        self._steps: list[Step] = []
        self.sent: list[Envelope[Any]] = []
        """Every envelope sent from outside so far, in order."""

    # -- what subclasses override ---------------------------------------------

    def check(self, outcome: Outcome) -> None:
        """What must hold after every step (raise, e.g. `assert`, if not)."""

    def settled(self, outcome: Outcome) -> None:
        """What must hold once everything sent has been delivered."""

    # -- looking ----------------------------------------------------------------

    @property
    def trace(self) -> Trace:
        """Every step the machine took, in order."""
        return Trace(tuple(self._steps))

    def outcome(self) -> Outcome:
        """Every activated entity's current state."""
        return self._world.outcome(self._ctx.addresses)

    @property
    def pending(self) -> int:
        """Messages in flight or waiting for their delay."""
        return self._world.pending()

    # -- the rules ----------------------------------------------------------------

    @rule(data=st.data())
    def send(self, data: st.DataObject) -> None:
        """Send one drawn envelope from outside (it is in flight, not delivered)."""
        envelope = data.draw(self.sends, label="envelope")
        self._world = _world.send(self._world, self._ctx, [envelope])
        self.sent.append(envelope)

    @precondition(lambda self: bool(self._world.channels))
    @rule(choice=st.integers(min_value=0, max_value=_WIDEST_CHOICE))
    def deliver(self, choice: int) -> None:
        """Take one step: enabled event number `choice` (a delivery, or a
        drop or duplicate while the fault budgets last)."""
        events = [e for e in enabled(self._world) if e.kind is not Kind.TICK]
        self._step(events[choice % len(events)])

    @precondition(lambda self: bool(self._world.timers))
    @rule(seconds=st.floats(min_value=0.0, max_value=1.0))
    def advance(self, seconds: float) -> None:
        """Move the virtual clock on (by a fraction of `max_delay`), putting
        the messages that fall due in flight."""
        until = self._world.now + seconds * self.max_delay
        while self._world.timers and self._world.timers[0][0] <= until:
            self._step(_world.TICK)
        self._world = _world.advance_clock(self._world, until)

    @invariant()
    def _holds(self) -> None:
        check_invariant(self.check, self.outcome(), lambda: self.trace)

    def teardown(self) -> None:
        """Deliver everything still in flight (plainest order, no more
        faults), then run `settled`."""
        if type(self).settled is SimulationMachine.settled:
            return
        self._world = self._world.with_faults(NO_FAULTS)
        while True:
            events = enabled(self._world)
            if not events:
                break
            if len(self._steps) > 100_000:
                raise AssertionError("the system did not go quiet within 100,000 steps")
            self._step(events[0])
        check_invariant(self.settled, self.outcome(), lambda: self.trace)

    def _step(self, event: _world.Event) -> None:
        self._world, step = apply(self._world, event, self._ctx)
        self._steps.append(step)
        if step.error is not None and self.on_error == "raise":
            raise failure(step, self.trace)
