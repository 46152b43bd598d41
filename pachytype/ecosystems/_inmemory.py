"""InMemory: the whole ecosystem in process memory. Fast, at-most-once (a
crash loses everything), for tests and for state that may be rebuilt."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from pachytype._address import Envelope, Ref
from pachytype._budget import DEFAULT_BUDGET, check_budget
from pachytype._clock import Clock
from pachytype._codec import Codec
from pachytype._deadletter import DeadLetter
from pachytype._ecosystem import Ecosystem, event_type
from pachytype._errors import EcosystemClosedError
from pachytype._event_sourced import EventSourced
from pachytype._events import StoredEvent, tail
from pachytype._registry import Registry
from pachytype._runtime.dispatch import MAX_BACKLOG, Runtime

S = TypeVar("S")
E = TypeVar("E")

_YIELD_EVERY = 16
"""Inline-answered calls between forced yields to the event loop."""


class InMemory(Ecosystem):
    """Run the registry's entities in this process's memory.

    * `roundtrip` (default True): every message and new state goes through
      the codec (encoded and decoded back) exactly as a durable ecosystem
      stores it, so what works here cannot fail on disk for an encoding
      reason; `roundtrip=False` skips it (faster: `make bench` shows by how
      much) for code already proven on a durable ecosystem.
    * `max_backlog`: queued messages above which an outside `send` waits
      for the entities to catch up (backpressure).
    * `activation_budget`: seconds an `activate` may run before it is
      interrupted and its message dead-lettered (`ActivationTimeoutError`);
      an entity class may set its own `activation_budget`.
    * `clock`: where delays wait (default the system clock); a
      `ManualClock` lets a test fire a 30-day reminder with `clock.advance`.

    >>> async with InMemory(REGISTRY) as eco:              # doctest: +SKIP
    ...     await eco.call(refs.counter("c").increment())
    1
    """

    def __init__(
        self,
        registry: Registry,
        *,
        roundtrip: bool = True,
        max_backlog: int = MAX_BACKLOG,
        activation_budget: float = DEFAULT_BUDGET,
        clock: Clock | None = None,
    ) -> None:
        self.registry = registry
        self.clock = clock
        """Where time is read and delays wait (None: the system clock)."""
        self.activation_budget = check_budget(activation_budget, "InMemory")
        self.roundtrip = roundtrip
        self.max_backlog = max_backlog
        self._runtime: Runtime | None = None
        self._calls = 0

    @property
    def _rt(self) -> Runtime:
        rt = self._runtime
        if rt is None:
            raise EcosystemClosedError(
                "the ecosystem is not open: use `async with InMemory(REGISTRY) as eco:`"
            )
        return rt

    async def _open(self) -> None:
        if self._runtime is not None:
            raise RuntimeError("this InMemory ecosystem is already open")
        codec = Codec(self.registry) if self.roundtrip else None
        rt = Runtime(
            self.registry,
            codec=codec,
            max_backlog=self.max_backlog,
            activation_budget=self.activation_budget,
            clock=self.clock,
        )
        rt.start()
        self._runtime = rt

    async def _close(self) -> None:
        rt, self._runtime = self._runtime, None
        if rt is not None:
            await rt.stop()

    async def send(self, *envelopes: Envelope[Any]) -> None:
        rt = self._rt
        if rt._backlog > rt.max_backlog:
            await rt.backpressure()
        rt.send(envelopes)

    async def _call(self, envelope: Envelope[S]) -> S:
        fut = self._rt.call(envelope)
        self._calls += 1
        if fut.done() and self._calls % _YIELD_EVERY == 0:
            # A call answered inline does not yield; a loop of them must
            # still let other tasks (and the dispatcher) run now and then.
            await asyncio.sleep(0)
        result: S = await fut
        return result

    async def _forget_inbox(self, inbox: Ref[Any, Any]) -> None:
        self._rt.forget(inbox.key)

    async def _state(self, ref: Ref[Any, S]) -> S:
        result: S = self._rt.state(ref)
        return result

    def follow(self, ref: Ref[Any, S]) -> AsyncIterator[S]:
        return self._rt.follow(ref)

    async def dead_letters(self) -> list[DeadLetter]:
        return self._rt.dead_letters()

    async def redeliver(self, dead_letter: DeadLetter) -> None:
        self._rt.resend_dead(dead_letter)

    async def discard(self, dead_letter: DeadLetter) -> None:
        self._rt.drop_dead(dead_letter)

    async def settle(self) -> None:
        await self._rt.quiesce()

    def events(self, ref: Ref[Any, Any], *, after: int = 0) -> AsyncIterator[tuple[int, Any]]:
        rt = self._rt
        event_type(self.registry, ref.entity_type, ref)
        log = rt.log

        async def read(position: int) -> list[tuple[int, object]]:
            return log.of_entity(ref.key, position)

        return tail(log.signal, read, _seq, after)

    def events_of(
        self, entity: type[EventSourced[Any, Any, E, Any]] | str, *, after: int = 0
    ) -> AsyncIterator[StoredEvent[E]]:
        log = self._rt.log
        name = event_type(self.registry, entity).name

        async def read(position: int) -> list[StoredEvent[Any]]:
            return log.of_type(name, position)

        return tail(log.signal, read, _position, after)


def _seq(item: tuple[int, object]) -> int:
    return item[0]


def _position(item: StoredEvent[Any]) -> int:
    return item.position
