"""The simulation behind the async `Ecosystem` interface (send, call, state,
follow, dead letters, settle), so code and tests written against any
ecosystem run on it too.

Design note
-----------
* **A view, not a copy.** `Simulation.ecosystem()` returns a view of the
  simulation's one world; several may be open at once. Their `Driver`
  (`_driver`) delivers the world with one task, one seeded step at a
  time: delivery orders are shuffled (per sender -> receiver pair they
  stay in send order), never faulted, and every delivery is told to every
  open view. States, timers, dead letters and the event log are the
  world's, seen alike through every view; a view's own are its calls, its
  followers and its event streams, which end when it closes.
* **Real time here.** Delays wait on the views' clock (see `_driver`);
  for instant virtual time, use `Simulation.run`, `advance` and `exhaust`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final, TypeVar

from pachytype._address import Envelope, Key, Ref, make_envelope
from pachytype._clock import Clock, SystemClock
from pachytype._deadletter import DeadLetter
from pachytype._ecosystem import Ecosystem, event_type
from pachytype._errors import EcosystemClosedError, PachytypeError
from pachytype._event_sourced import EventSourced
from pachytype._events import Signal, StoredEvent, tail

if TYPE_CHECKING:
    from pachytype.simulation._simulation import Simulation

S = TypeVar("S")
E = TypeVar("E")

_CLOSED: Final = object()


class SimulatedEcosystem(Ecosystem):
    """A view of a `Simulation` as an `Ecosystem`; get one with `Simulation.ecosystem()`.

    >>> async with Simulation(REGISTRY, seed=3).ecosystem() as eco:    # doctest: +SKIP
    ...     await eco.call(refs.counter("c").increment())
    1

    Views of one simulation open at once share its world (states, timers,
    dead letters, events) and its clock; each has its own calls, follows
    and event streams, ended when it closes.
    """

    def __init__(self, simulation: Simulation, clock: Clock | None = None) -> None:
        self.simulation = simulation
        self.registry = simulation.registry
        self._given_clock = clock
        self.clock: Clock = SystemClock() if clock is None else clock
        """The clock delays wait on: the one given, or, once open, the open
        views' (a view given none takes theirs)."""
        self._driver = simulation._driver
        self._opened = False
        self._pending: set[asyncio.Future[Any]] = set()  # this view's calls not answered yet
        self._followers: dict[Key, list[asyncio.Queue[object]]] = {}
        self._signal = Signal()  # wakes this view's event streams

    # -- lifecycle ---------------------------------------------------------

    async def _open(self) -> None:
        if self._opened:
            raise RuntimeError("this simulated ecosystem is already open")
        self.clock = self._driver.join(self, self._given_clock)
        self._opened = True
        if self._signal.closed:
            self._signal = Signal()  # a reopened view streams again (its events stay)

    async def _close(self) -> None:
        if self._opened:
            self._opened = False
            await self._driver.leave(self)
        closed = EcosystemClosedError("the ecosystem closed before this message was handled")
        for fut in self._pending:
            if not fut.done():
                fut.set_exception(closed)
        self._pending.clear()
        for queues in self._followers.values():
            for queue in queues:
                queue.put_nowait(_CLOSED)
        self._followers.clear()
        self._signal.close()

    def _check_open(self) -> None:
        crash = self._driver.crash
        if crash is not None:
            raise RuntimeError("the simulated ecosystem stopped on an internal error") from crash
        if not self._opened:
            raise EcosystemClosedError(
                "the ecosystem is not open: use `async with Simulation(REGISTRY).ecosystem() "
                "as eco:`"
            )

    # -- the Ecosystem interface -------------------------------------------

    async def send(self, *envelopes: Envelope[Any]) -> None:
        self._check_open()
        self._driver.send(envelopes)

    async def _call(self, envelope: Envelope[S]) -> S:
        self._check_open()
        fut = self._driver.call(envelope)
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)
        result: S = await fut
        return result

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
                yield item  # type: ignore[misc]  # states of `ref`, put by _feed
        finally:
            queues.remove(queue)
            if not queues and self._followers.get(ref.key) is queues:
                del self._followers[ref.key]

    def _feed(self, key: Key, state: object) -> bool:
        """A delivery to `key` left `state`: give it to this view's followers
        of `key`; whether there were any (`Driver._publish`)."""
        queues = self._followers.get(key)
        if not queues:
            return False
        for queue in queues:
            queue.put_nowait(state)
        return True

    async def dead_letters(self) -> list[DeadLetter]:
        return list(self._driver.dead)

    def _take_dead(self, dead_letter: DeadLetter, what: str) -> DeadLetter:
        kept = self._driver.take_dead(dead_letter.seq)
        if kept is None:
            raise PachytypeError(
                f"cannot {what} dead letter #{dead_letter.seq} for {dead_letter.to!r}: it is "
                f"not among this ecosystem's dead letters (already redelivered or discarded); "
                f"list them again with `await eco.dead_letters()`"
            )
        return kept

    async def redeliver(self, dead_letter: DeadLetter) -> None:
        self._check_open()
        kept = self._take_dead(dead_letter, "redeliver")
        await self.send(make_envelope(kept.to, kept.message))

    async def discard(self, dead_letter: DeadLetter) -> None:
        self._check_open()
        self._take_dead(dead_letter, "discard")

    async def settle(self) -> None:
        self._check_open()
        await self._driver.settle(self._check_open)

    def events(self, ref: Ref[Any, Any], *, after: int = 0) -> AsyncIterator[tuple[int, Any]]:
        self._check_open()
        event_type(self.registry, ref.entity_type, ref)
        driver = self._driver

        async def read(position: int) -> list[tuple[int, object]]:
            return driver.log.of_entity(ref.key, position)

        return tail(self._signal, read, lambda item: item[0], after)

    def events_of(
        self, entity: type[EventSourced[Any, Any, E, Any]] | str, *, after: int = 0
    ) -> AsyncIterator[StoredEvent[E]]:
        self._check_open()
        name = event_type(self.registry, entity).name
        driver = self._driver

        async def read(position: int) -> list[StoredEvent[Any]]:
            return driver.log.of_type(name, position)

        return tail(self._signal, read, lambda item: item.position, after)

    async def _forget_inbox(self, inbox: Ref[Any, Any]) -> None:
        self._driver.forget(inbox.key)
