"""The simulation behind the async `Ecosystem` interface (send, call, state,
follow, dead letters, settle), so code and tests written against any
ecosystem run on it too.

Design note
-----------
* **Same world, paced by the event loop.** The adapter drives the
  simulation's world with one task, one seeded step at a time: delivery
  orders are shuffled (per sender -> receiver pair they stay in send order),
  never faulted. Calls, followers and dead letters are fed from the steps.
* **Real time here.** Code written against an ecosystem expects a delayed
  envelope to take its delay, so in this mode the virtual clock follows the
  event loop's clock (timers fire when due, not at once). For instant
  virtual time, use `Simulation.run`, `advance` and `exhaust`.
* **Calls are matched by identity.** A call's message object is looked up
  when it is delivered from outside to its target, so each call gets the
  state right after its own message even among equal messages. A call
  whose keyed timer is replaced or cancelled (its message gone from the
  world's timers and channels, never delivered) fails at once, as on the
  other ecosystems.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs

from pachytype._address import Envelope, Key, Ref, make_envelope, unpack
from pachytype._clock import Clock, SystemClock, Timer
from pachytype._core.timers import timer_dropped
from pachytype._deadletter import DeadLetter
from pachytype._ecosystem import Ecosystem, event_type
from pachytype._errors import ActivationError, EcosystemClosedError, PachytypeError
from pachytype._event_sourced import EventSourced
from pachytype._events import Signal, StoredEvent, tail
from pachytype._inbox import state_kept
from pachytype.simulation._run import seeded
from pachytype.simulation._trace import Kind, Step
from pachytype.simulation._world import TICK, advance_clock, apply, enabled

if TYPE_CHECKING:
    from pachytype.simulation._simulation import Simulation

S = TypeVar("S")
E = TypeVar("E")

_RECENT: Final = 10
"""How many recent messages a dead letter keeps."""

_TURN: Final = 256
"""Steps between yields to the event loop."""

_CLOSED: Final = object()


class SimulatedEcosystem(Ecosystem):
    """A `Simulation` as an `Ecosystem`; get one with `Simulation.ecosystem()`.

    >>> async with Simulation(REGISTRY, seed=3).ecosystem() as eco:    # doctest: +SKIP
    ...     await eco.call(refs.counter("c").increment())
    1
    """

    def __init__(self, simulation: Simulation, clock: Clock | None = None) -> None:
        self.simulation = simulation
        self.clock: Clock = SystemClock() if clock is None else clock
        self._alarm: Timer | None = None
        self.registry = simulation.registry
        self._choose = seeded(simulation._rng, 0.0)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._t0 = 0.0
        self._calls: dict[tuple[Key, int], deque[asyncio.Future[Any]]] = {}
        self._keyed: dict[tuple[Key, int], tuple[object, str]] = {}  # calls behind keyed timers
        self._followers: dict[Key, list[asyncio.Queue[object]]] = {}
        self._recent: dict[Key, deque[object]] = {}
        self._dead: list[DeadLetter] = []
        self._dead_seq = 0
        self._crash: Exception | None = None
        self._log = simulation._log  # shared by every view of this simulation

    # -- lifecycle ---------------------------------------------------------

    async def _open(self) -> None:
        if self._task is not None:
            raise RuntimeError("this simulated ecosystem is already open")
        loop = asyncio.get_running_loop()
        self._t0 = self.clock.now() - self.simulation._world.now  # the world's clock goes on
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        if self._log.signal.closed:
            self._log.signal = Signal()  # a reopened view streams again (its events stay)
        self._task = loop.create_task(self._pump(), name="pachytype simulation")

    async def _close(self) -> None:
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                if self._crash is None:
                    await task  # a crashed pump already told its callers
        closed = EcosystemClosedError("the ecosystem closed before this message was handled")
        for waiting in self._calls.values():
            for fut in waiting:
                if not fut.done():
                    fut.set_exception(closed)
        self._calls.clear()
        for queues in self._followers.values():
            for queue in queues:
                queue.put_nowait(_CLOSED)
        self._followers.clear()
        self._log.signal.close()

    def _check_open(self) -> None:
        if self._crash is not None:
            raise RuntimeError("the simulated ecosystem stopped on an internal error") from (
                self._crash
            )
        if self._task is None:
            raise EcosystemClosedError(
                "the ecosystem is not open: use `async with Simulation(REGISTRY).ecosystem() "
                "as eco:`"
            )

    # -- the Ecosystem interface -------------------------------------------

    async def send(self, *envelopes: Envelope[Any]) -> None:
        self._check_open()
        self._catch_up()
        self.simulation.send(envelopes)
        self._fail_dropped()
        self._kick()

    async def _call(self, envelope: Envelope[S]) -> S:
        self._check_open()
        to, message, _ = unpack(envelope)
        self._catch_up()
        self.simulation.send([envelope])
        fut: asyncio.Future[S] = asyncio.get_running_loop().create_future()
        self._calls.setdefault((to.key, id(message)), deque()).append(fut)
        if envelope.timer_key is not None:
            self._keyed[(to.key, id(message))] = (to, envelope.timer_key)
        self._kick()
        return await fut

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

    async def _state(self, ref: Ref[Any, S]) -> S:
        return self.simulation.state(ref)

    def follow(self, ref: Ref[Any, S]) -> AsyncIterator[S]:
        return self._follow(ref)

    async def _follow(self, ref: Ref[Any, S]) -> AsyncIterator[S]:
        self._check_open()
        self.registry.get(ref.entity_type, ref.id)
        queue: asyncio.Queue[object] = asyncio.Queue()
        queues = self._followers.setdefault(ref.key, [])
        queues.append(queue)
        try:
            yield await self.state(ref)
            while (item := await queue.get()) is not _CLOSED:
                yield item  # type: ignore[misc]  # states of `ref`, put by _publish
        finally:
            queues.remove(queue)
            if not queues and self._followers.get(ref.key) is queues:
                del self._followers[ref.key]

    async def dead_letters(self) -> list[DeadLetter]:
        return list(self._dead)

    def _take_dead(self, dead_letter: DeadLetter, what: str) -> DeadLetter:
        for i, kept in enumerate(self._dead):
            if kept.seq == dead_letter.seq:
                return self._dead.pop(i)
        raise PachytypeError(
            f"cannot {what} dead letter #{dead_letter.seq} for {dead_letter.to!r}: it is not "
            f"among this ecosystem's dead letters (already redelivered or discarded); list "
            f"them again with `await eco.dead_letters()`"
        )

    async def redeliver(self, dead_letter: DeadLetter) -> None:
        self._check_open()
        kept = self._take_dead(dead_letter, "redeliver")
        await self.send(make_envelope(kept.to, kept.message))

    async def discard(self, dead_letter: DeadLetter) -> None:
        self._check_open()
        self._take_dead(dead_letter, "discard")

    async def settle(self) -> None:
        self._check_open()
        while True:
            self._check_open()
            self._catch_up()
            if self._idle.is_set() and not self._deliverable():
                return
            self._kick()
            await self._idle.wait()
            await asyncio.sleep(0)

    def events(self, ref: Ref[Any, Any], *, after: int = 0) -> AsyncIterator[tuple[int, Any]]:
        self._check_open()
        event_type(self.registry, ref.entity_type, ref)
        log = self._log

        async def read(position: int) -> list[tuple[int, object]]:
            return log.of_entity(ref.key, position)

        return tail(log.signal, read, lambda item: item[0], after)

    def events_of(
        self, entity: type[EventSourced[Any, Any, E, Any]] | str, *, after: int = 0
    ) -> AsyncIterator[StoredEvent[E]]:
        self._check_open()
        name = event_type(self.registry, entity).name
        log = self._log

        async def read(position: int) -> list[StoredEvent[Any]]:
            return log.of_type(name, position)

        return tail(log.signal, read, lambda item: item.position, after)

    # -- driving the world ---------------------------------------------------

    def _kick(self) -> None:
        self._idle.clear()
        self._wake.set()

    def _deliverable(self) -> bool:
        return any(e.kind is not Kind.TICK for e in enabled(self.simulation._world))

    def _catch_up(self) -> None:
        """Fire the timers due by now (event-loop time) and set the clock to now."""
        sim = self.simulation
        elapsed = self.clock.now() - self._t0
        world = sim._world
        while world.timers and world.timers[0][0] <= elapsed:
            world, _ = apply(world, TICK, sim._ctx)
        sim._world = advance_clock(world, elapsed)

    async def _pump(self) -> None:
        try:
            await self._deliver()
        except Exception as error:
            # A bug in the simulation itself, not in an entity (those are dead
            # letters): fail every waiting caller instead of leaving it hanging.
            self._crash = error
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
            self._catch_up()
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
        """Feed a delivery to the waiting call, the followers or the dead letters."""
        to = step.to
        assert to is not None
        key = to.key
        recent = self._recent.setdefault(key, deque(maxlen=_RECENT))
        recent.append(step.message)
        fut = None
        if step.sender is None:
            waiting = self._calls.get((key, id(step.message)))
            if waiting:
                fut = waiting.popleft()
                if not waiting:
                    del self._calls[(key, id(step.message))]
                    self._keyed.pop((key, id(step.message)), None)
        if step.error is not None:
            error = step.error
            self._dead_seq += 1
            seq = self._dead_seq
            self._dead.append(
                DeadLetter.capture(seq, to, step.message, error, step.before, tuple(recent))
            )
            if fut is not None and not fut.done():
                failure = ActivationError(to.entity_type, to.id, step.message, error)
                failure.__cause__ = error
                fut.set_exception(failure)
            return
        if step.events:
            base = self._log.count(key)
            self._log.append(to, [(base + i, e) for i, e in enumerate(step.events, 1)])
        if fut is not None and not fut.done():
            fut.set_result(step.after)
        for queue in self._followers.get(key, ()):
            queue.put_nowait(step.after)
        if not state_kept(to.entity_type, key in self._followers):
            self._forget(key)  # an inbox nobody follows: its ask is over (`pachytype._inbox`)

    async def _forget_inbox(self, inbox: Ref[Any, Any]) -> None:
        self._forget(inbox.key)

    def _forget(self, key: Key) -> None:
        sim = self.simulation
        world = sim._world
        if key in world.states:
            states = {k: v for k, v in world.states.items() if k != key}
            sim._world = attrs.evolve(world, states=states)
        self._recent.pop(key, None)
