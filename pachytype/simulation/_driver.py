"""What the ecosystem views of one simulation share: the one task that
delivers its world while any view is open, and the world's bookkeeping
around deliveries (calls waiting for their message, dead letters, recent
messages, the event log).

Design note
-----------
* **One world, one driver.** A view (`SimulatedEcosystem`) is a handle;
  any number may be open at once, all sending into the simulation's one
  world. The first view to open starts the pump, the last to close stops
  it, and in between exactly one task chooses deliveries, from the
  simulation's seeded generator: a seed gives one order whichever view
  sent what. (With a pump per view, a delivery was told only to the view
  whose pump made it, so a call through another view waited forever.)
* **Every delivery is told to every open view.** What is the world's is
  kept here: calls are matched to their delivery by message identity in
  one table for all views (each call gets the state right after its own
  message, even among equal messages sent through different views), dead
  letters, the event log (kept across views opened again). What is a
  view's stays in the view: its followers and the signal its event
  streams wait on, so closing one view ends its calls, follows and
  streams, not another's.
* **Real time, one clock.** Code written against an ecosystem expects a
  delayed envelope to take its delay, so the virtual clock follows the
  views' clock (timers fire when due, not at once). Views open at once
  share it: one opened without a clock takes it, one given another is
  refused. For instant virtual time, use `Simulation.run`, `advance` and
  `exhaust`.
* **Dropped keyed timers.** A call whose keyed timer is replaced or
  cancelled (its message gone from the world's timers and channels, never
  delivered) fails at once, as on the other ecosystems.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

import attrs

from pachytype._address import Envelope, Key, unpack
from pachytype._clock import Clock, SystemClock, Timer
from pachytype._core.timers import timer_dropped
from pachytype._deadletter import DeadLetter
from pachytype._errors import ActivationError
from pachytype._events import MemoryLog
from pachytype._inbox import state_kept
from pachytype.simulation._run import seeded
from pachytype.simulation._trace import Kind, Step
from pachytype.simulation._world import TICK, advance_clock, apply, enabled

if TYPE_CHECKING:
    from pachytype.simulation._ecosystem import SimulatedEcosystem
    from pachytype.simulation._simulation import Simulation

_RECENT: Final = 10
"""How many recent messages a dead letter keeps."""

_TURN: Final = 256
"""Steps between yields to the event loop."""

_Call = tuple[Key, int]
"""A call's target and the identity of its message."""


class Driver:
    """Delivers a simulation's world for its open views (see the module)."""

    def __init__(self, simulation: Simulation) -> None:
        self.simulation = simulation
        self.views: list[SimulatedEcosystem] = []
        """The open views, in the order they opened."""
        self.clock: Clock = SystemClock()
        """The clock of the open views (the last ones' once all are closed)."""
        self.log = MemoryLog()
        """The events the views stream, kept so that a view opened again
        resumes at the same positions and sequence numbers."""
        self.dead: list[DeadLetter] = []
        self.crash: Exception | None = None
        """A bug in the simulation itself that stopped the pump, if any."""
        self._dead_seq = 0
        self._recent: dict[Key, deque[object]] = {}
        self._calls: dict[_Call, deque[asyncio.Future[Any]]] = {}
        self._keyed: dict[_Call, tuple[object, str]] = {}  # calls behind keyed timers
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._alarm: Timer | None = None
        self._t0 = 0.0
        self._choose = seeded(simulation._rng, 0.0)

    def reset(self) -> None:
        """Forget the dead letters, recent messages and events (`Simulation.reset`)."""
        self.log = MemoryLog()
        self.dead.clear()
        self._recent.clear()

    # -- views opening and closing -------------------------------------------

    def join(self, view: SimulatedEcosystem, clock: Clock | None) -> Clock:
        """Count `view` among the open ones (the first starts the pump) and
        return the clock the open views share."""
        if self.views and clock is not None and not _same(clock, self.clock):
            raise ValueError(
                f"views of one simulation open at once share one clock: the open ones run "
                f"on {self.clock!r}, this one was given {clock!r}; pass it the same clock, "
                f"or open it with clock=None to take theirs"
            )
        if not self.views:
            self.clock = SystemClock() if clock is None else clock
            self._start()
        self.views.append(view)
        return self.clock

    async def leave(self, view: SimulatedEcosystem) -> None:
        """`view` closed; the last one to close stops the pump."""
        self.views.remove(view)
        # Wake the settles waiting: the closed view's end (it checks), the
        # others look again and wait on.
        self._idle.set()
        if self.views:
            return
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                if self.crash is None:
                    await task  # a crashed pump already told its callers
        self._calls.clear()  # each view fails its own calls as it closes
        self._keyed.clear()

    def _start(self) -> None:
        if self.crash is not None:
            return  # every view refuses to work (`SimulatedEcosystem._check_open`)
        world = self.simulation._world
        self._t0 = self.clock.now() - world.now  # the world's clock goes on
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._pump(), name="pachytype simulation")

    # -- what views ask --------------------------------------------------------

    def send(self, envelopes: Iterable[Envelope[Any]]) -> None:
        """Put envelopes in the world and wake the pump."""
        self.catch_up()
        self.simulation.send(envelopes)
        self._fail_dropped()
        self.kick()

    def call(self, envelope: Envelope[Any]) -> asyncio.Future[Any]:
        """Send `envelope`; the future gets its target's state right after it."""
        to, message, _ = unpack(envelope)
        self.catch_up()
        self.simulation.send([envelope])
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls.setdefault((to.key, id(message)), deque()).append(fut)
        if envelope.timer_key is not None:
            self._keyed[(to.key, id(message))] = (to, envelope.timer_key)
        self._fail_dropped()  # a call replacing an earlier call's keyed timer
        self.kick()
        return fut

    async def settle(self, check: Callable[[], None]) -> None:
        """Return once nothing is deliverable (`check` raises if the view closed)."""
        while True:
            check()
            self.catch_up()
            if self._idle.is_set() and not self._deliverable():
                return
            self.kick()
            await self._idle.wait()
            await asyncio.sleep(0)

    def take_dead(self, seq: int) -> DeadLetter | None:
        """Remove and return dead letter number `seq` (None if not kept)."""
        for i, kept in enumerate(self.dead):
            if kept.seq == seq:
                return self.dead.pop(i)
        return None

    def forget(self, key: Key) -> None:
        """Drop an entity's state from the world (an inbox whose ask is over)."""
        sim = self.simulation
        world = sim._world
        if key in world.states:
            states = {k: v for k, v in world.states.items() if k != key}
            sim._world = attrs.evolve(world, states=states)
        self._recent.pop(key, None)

    # -- driving the world -----------------------------------------------------

    def kick(self) -> None:
        self._idle.clear()
        self._wake.set()

    def _deliverable(self) -> bool:
        return any(e.kind is not Kind.TICK for e in enabled(self.simulation._world))

    def catch_up(self) -> None:
        """Fire the timers due by now (on the clock) and set the world's clock to now."""
        sim = self.simulation
        elapsed = self.clock.now() - self._t0
        world = sim._world
        while world.timers and world.timers[0][0] <= elapsed:
            world, _ = apply(world, TICK, sim._ctx)
        sim._world = advance_clock(world, elapsed)

    def _fail_dropped(self) -> None:
        """Fail the calls whose keyed timer was replaced or cancelled: their
        message is no longer in the world and was never delivered."""
        if not self._keyed:
            return
        world = self.simulation._world
        present = {id(t[2]) for t in world.timers}
        present.update(id(m) for messages in world.channels.values() for m in messages)
        for call, (to, key) in list(self._keyed.items()):
            if call[1] in present:
                continue
            del self._keyed[call]
            for fut in self._calls.pop(call, ()):
                if not fut.done():
                    fut.set_exception(timer_dropped(to, key, None))

    async def _pump(self) -> None:
        try:
            await self._deliver()
        except Exception as error:
            # A bug in the simulation itself, not in an entity (those are dead
            # letters): fail every waiting caller instead of leaving it hanging.
            self.crash = error
            for waiting in self._calls.values():
                for fut in waiting:
                    if not fut.done():
                        fut.set_exception(error)
            self._calls.clear()
            self._idle.set()
            raise

    async def _deliver(self) -> None:
        sim = self.simulation
        steps = 0
        while True:
            self.catch_up()
            events = [e for e in enabled(sim._world) if e.kind is not Kind.TICK]
            if not events:
                self._idle.set()
                self._wake.clear()
                timers = sim._world.timers
                if self._alarm is not None:
                    self._alarm.cancel()
                    self._alarm = None
                if timers:  # wake when the next delayed message is due on the clock
                    self._alarm = self.clock.call_at(self._t0 + timers[0][0], self._wake.set)
                await self._wake.wait()
                continue
            sim._world, step = apply(sim._world, self._choose(events), sim._ctx)
            self._publish(step)
            self._fail_dropped()
            steps += 1
            if steps % _TURN == 0:
                await asyncio.sleep(0)

    def _publish(self, step: Step) -> None:
        """Feed a delivery to its waiting call, the dead letters, the event
        log and every open view (their followers and streams)."""
        to = step.to
        assert to is not None
        key = to.key
        recent = self._recent.setdefault(key, deque(maxlen=_RECENT))
        recent.append(step.message)
        fut = self._answered(key, step) if step.sender is None else None
        if step.error is not None:
            error = step.error
            self._dead_seq += 1
            self.dead.append(
                DeadLetter.capture(
                    self._dead_seq, to, step.message, error, step.before, tuple(recent)
                )
            )
            if fut is not None and not fut.done():
                failure = ActivationError(to.entity_type, to.id, step.message, error)
                failure.__cause__ = error
                fut.set_exception(failure)
            return
        if step.events:
            base = self.log.count(key)
            self.log.append(to, [(base + i, e) for i, e in enumerate(step.events, 1)])
            for view in self.views:
                view._signal.notify()
        if fut is not None and not fut.done():
            fut.set_result(step.after)
        followed = False
        for view in self.views:
            followed = view._feed(key, step.after) or followed
        if not state_kept(to.entity_type, followed):
            self.forget(key)  # an inbox nobody follows: its ask is over (`pachytype._inbox`)

    def _answered(self, key: Key, step: Step) -> asyncio.Future[Any] | None:
        """The call (if any) waiting for this delivery from outside."""
        call = (key, id(step.message))
        waiting = self._calls.get(call)
        if not waiting:
            return None
        fut = waiting.popleft()
        if not waiting:
            del self._calls[call]
            self._keyed.pop(call, None)
        return fut


def _same(a: Clock, b: Clock) -> bool:
    """Whether two clocks tell the same time (system clocks all do)."""
    return a is b or (type(a) is SystemClock and type(b) is SystemClock)
