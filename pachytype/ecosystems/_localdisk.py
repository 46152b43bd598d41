"""LocalDisk: the durable single-node ecosystem, on one SQLite file.

State, mail, timers and dead letters live in SQLite (WAL, `synchronous=FULL`
by default); activations of many entities share one transaction (group
commit); `send` returns once its messages are durable and `call` once the
activation is. Delivery is at-least-once with exactly-once effect. Reopening
the file resumes everything. See `pachytype._runtime.durable` (the dispatcher) and
`pachytype._sqlite` (the store) for the rules.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

from pachytype._address import Envelope, Ref
from pachytype._budget import DEFAULT_BUDGET, check_budget
from pachytype._clock import Clock
from pachytype._codec import Codec
from pachytype._core.held import RETRY_HELD
from pachytype._deadletter import DeadLetter
from pachytype._ecosystem import Ecosystem, event_type
from pachytype._errors import EcosystemClosedError
from pachytype._event_sourced import EventSourced
from pachytype._events import StoredEvent
from pachytype._registry import Registry
from pachytype._runtime.durable import CACHE_SIZE, MAX_BACKLOG, MAX_BATCH, DurableRuntime
from pachytype._runtime.durable.recent import RECENT_EVERY, check_recent_every
from pachytype._sqlite import SqliteStore, Synchronous

S = TypeVar("S")
E = TypeVar("E")


class LocalDisk(Ecosystem):
    """Run the registry's entities durably on one SQLite file.

    >>> async with LocalDisk("bank.db", REGISTRY) as eco:      # doctest: +SKIP
    ...     await eco.call(refs.account("alice").deposit(amount=5))

    `synchronous="NORMAL"` is faster but a power loss may lose the last
    commits (never corrupt them); `max_batch` bounds the activations per
    transaction, `cache_size` the states kept in memory, and `max_backlog`
    the queued messages above which `send` waits. `activation_budget`: seconds
    an `activate` may run before it is interrupted and dead-lettered;
    `retry_held`: seconds between two attempts to load a state that could not
    be loaded (its entity is held meanwhile, its mail kept in order);
    `recent_every`: seconds at most between an entity running a message and
    the write of its recent messages (a dead letter's context): after a kill,
    a dead letter misses at most those of the last `recent_every` seconds (0
    writes them with every commit, at a cost);
    `clock`: where time is read (timers are stored with their due time) and
    delays wait (a `ManualClock` in tests).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        registry: Registry,
        *,
        synchronous: Synchronous = "FULL",
        max_batch: int = MAX_BATCH,
        cache_size: int = CACHE_SIZE,
        max_backlog: int = MAX_BACKLOG,
        activation_budget: float = DEFAULT_BUDGET,
        clock: Clock | None = None,
        retry_held: float = RETRY_HELD,
        recent_every: float = RECENT_EVERY,
    ) -> None:
        self.path = Path(path)
        self.retry_held = retry_held
        self.recent_every = check_recent_every(recent_every, f"LocalDisk({str(path)!r})")
        self.activation_budget = check_budget(activation_budget, f"LocalDisk({str(path)!r})")
        self.registry = registry
        self.clock = clock
        """Where time is read and delays wait (None: the system clock)."""
        self.synchronous: Synchronous = synchronous
        self.max_batch = max_batch
        self.cache_size = cache_size
        self.max_backlog = max_backlog
        self._runtime: DurableRuntime | None = None

    @property
    def _rt(self) -> DurableRuntime:
        rt = self._runtime
        if rt is None:
            raise EcosystemClosedError(
                "the ecosystem is not open: use `async with LocalDisk(path, REGISTRY) as eco:`"
            )
        return rt

    async def _open(self) -> None:
        if self._runtime is not None:
            raise RuntimeError(f"this LocalDisk ecosystem ({str(self.path)!r}) is already open")
        rt = DurableRuntime(
            self.registry,
            SqliteStore(self.path, self.synchronous),
            Codec(self.registry),
            max_batch=self.max_batch,
            cache_size=self.cache_size,
            max_backlog=self.max_backlog,
            activation_budget=self.activation_budget,
            clock=self.clock,
            retry_held=self.retry_held,
            recent_every=self.recent_every,
        )
        await rt.open()
        self._runtime = rt

    async def _close(self) -> None:
        rt, self._runtime = self._runtime, None
        if rt is not None:
            await rt.stop()

    async def send(self, *envelopes: Envelope[Any]) -> None:
        await self._rt.send_durably(envelopes)

    async def _call(self, envelope: Envelope[S]) -> S:
        result: S = await self._rt.call(envelope)
        return result

    async def _forget_inbox(self, inbox: Ref[Any, Any]) -> None:
        await self._rt.forget_state(inbox)

    async def _state(self, ref: Ref[Any, S]) -> S:
        result: S = await self._rt.read_state(ref)
        return result

    def follow(self, ref: Ref[Any, S]) -> AsyncIterator[S]:
        return self._rt.follow(ref)

    async def dead_letters(self) -> list[DeadLetter]:
        return await self._rt.stored_dead_letters()

    async def redeliver(self, dead_letter: DeadLetter) -> None:
        """Send a dead letter's message again (after fixing the code that failed
        on it); it leaves the dead letters in the same transaction."""
        await self._rt.redeliver(dead_letter)

    async def discard(self, dead_letter: DeadLetter) -> None:
        await self._rt.discard(dead_letter)

    async def settle(self) -> None:
        await self._rt.quiesce()

    def events(self, ref: Ref[Any, Any], *, after: int = 0) -> AsyncIterator[tuple[int, Any]]:
        rt = self._rt
        return rt.entity_events(event_type(self.registry, ref.entity_type, ref), ref, after)

    def events_of(
        self, entity: type[EventSourced[Any, Any, E, Any]] | str, *, after: int = 0
    ) -> AsyncIterator[StoredEvent[E]]:
        rt = self._rt
        return rt.type_events(event_type(self.registry, entity), after)
