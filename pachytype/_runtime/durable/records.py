"""The durable runtime's records: its defaults and limits, the messages on
their way into a batch (`Out`), entities in memory (`_Live`), timers
(`_Timer`), outside requests (`_Request`) and a built batch's effects
waiting for its commit (`_Pending`). Plain data; the functions of the
sibling modules act on them."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable, Iterable
from typing import Any, Final, Protocol, TypeAlias

from pachytype._address import Address
from pachytype._clock import Timer
from pachytype._core.turn import RECENT
from pachytype._registry import EntityType

MAX_BATCH: Final = 256
"""Default bound on activations (and on new outside messages) per group commit."""

CACHE_SIZE: Final = 100_000
"""Default number of committed states kept in memory."""

MAX_BACKLOG: Final = 100_000
"""Default number of queued messages above which `send` waits."""

_LIVE_KEPT: Final = 20_000
"""Idle live records kept (with their recent messages) before a bulk drop."""

_CALL_BATCH: Final = 64
"""Activations in a batch built while `call`s wait (kept short for their latency)."""

_ENCODE_SLICE: Final = 128
"""Messages of one `send` encoded between two yields to the event loop."""

MAX_ATTEMPTS: Final = 3
"""Times stored mail may be running when its process dies (crash, kill, a hang
the budget could not cut) before it is dead-lettered without running again."""

_STOP_WAIT: Final = 5.0
"""Seconds `stop` waits for the batch under way to commit before it cuts it off."""

_GC_EVERY: Final = 32
"""Commits between two `forget_below` sweeps of consumed mail, at least."""

_SCANS_PER_COMMIT: Final = 100
"""A sweep scans every live entity for its oldest waiting mail: with more
than `_GC_EVERY * _SCANS_PER_COMMIT` of them, sweeps are spaced out so that
a commit pays for about this many of those looks (the mail they delete is
the same, in fewer, bigger deletes)."""

Future: TypeAlias = "asyncio.Future[Any]"
Mail: TypeAlias = tuple[int, object, "asyncio.Future[Any] | None", bytes]
"""An inbox entry: (message id, message, future of a `call` or None, the
message as stored)."""


class Out:
    """A checked, encoded message on its way into a batch (not yet numbered)."""

    __slots__ = ("address", "delay", "etype", "fut", "id_text", "message", "payload", "tkey")

    def __init__(
        self,
        address: Address[Any],
        etype: EntityType,
        id_text: str,
        message: object,
        payload: bytes,
        delay: float,
        fut: Future | None,
        tkey: str | None = None,
    ) -> None:
        self.address = address
        self.etype = etype
        self.id_text = id_text
        self.message = message
        self.payload = payload
        self.delay = delay
        self.fut = fut
        self.tkey = tkey
        """A keyed timer's key; with message `CANCEL`, the key of the timer cancelled."""


class Codec(Protocol):
    """What the durable runtime needs from `pachytype._codec.Codec`."""

    def encode_id(self, entity_type: str, id: Hashable) -> str: ...
    def decode_id(self, entity_type: str, text: str) -> Hashable: ...
    def encode_message(self, entity_type: str, message: object) -> bytes: ...
    def decode_message(self, entity_type: str, data: bytes, id: Hashable = None) -> object: ...
    def encode_state(self, entity_type: str, state: object) -> bytes: ...
    def encode_state_checked(
        self, entity_type: str, state: object, id: Hashable = None
    ) -> bytes: ...
    def decode_state(self, entity_type: str, id: Hashable, data: bytes, version: int) -> object: ...
    def encode_event(self, entity_type: str, event: object, id: Hashable = None) -> bytes: ...
    def decode_event(self, entity_type: str, id: Hashable, data: bytes) -> object: ...


class _Live:
    """An entity in memory: its inbox, recent messages and scheduling flags.

    `scheduled`: in a ready queue or busy; `busy`: a commit with its
    activation is in flight; `urgent`: in the calls-first queue.
    """

    __slots__ = (
        "address",
        "busy",
        "etype",
        "id_text",
        "inbox",
        "key",
        "pushed",
        "recent",
        "recent_dirty",
        "scheduled",
        "stored",
        "urgent",
    )

    def __init__(self, address: Address[Any], etype: EntityType, id_text: str) -> None:
        self.key = address._key
        self.address = address
        self.etype = etype
        self.id_text = id_text
        self.inbox: deque[Mail] = deque()
        self.recent: deque[object] = deque(maxlen=RECENT)
        self.stored: deque[bytes] = deque(maxlen=RECENT)
        """`recent` as stored (the bytes its mail came in), in step with it:
        written as they are, never encoded again (`recent.recent_row`)."""
        self.recent_dirty = False  # recent changed since it was last written
        self.pushed: tuple[tuple[object, ...], tuple[bytes, ...]] | None = None
        """`recent` and `stored` before the turn in flight, if that turn pushed
        some out (`unnote`)."""
        self.scheduled = False
        self.busy = False
        self.urgent = False


class _Timer:
    """A delayed message: stored in the timers table, armed on the loop."""

    __slots__ = ("dropped", "due", "handle", "id", "out")

    def __init__(self, id: int, out: Out, due: float) -> None:
        self.id = id
        self.out = out
        self.due = due
        self.handle: Timer | None = None
        self.dropped = False  # replaced or cancelled (keyed timers): never armed again


class _Request:
    """An outside `send`/`call`/`redeliver`, acknowledged after its commit."""

    __slots__ = ("ack", "forget", "outs", "redeliver")

    def __init__(
        self,
        outs: list[Out],
        ack: asyncio.Future[None] | None,
        redeliver: int | None = None,
        forget: Address[Any] | None = None,
    ) -> None:
        self.outs = outs
        self.ack = ack
        self.redeliver = redeliver
        self.forget = forget


class _Pending:
    """A built batch's observable effects, applied once it is committed.

    `turns`: (entity, new state or UNBORN if unchanged, states to show
    followers or None); `results`/`failures`: call outcomes.
    """

    __slots__ = ("acks", "failures", "flushed", "requests", "results", "timers", "turns")

    def __init__(self) -> None:
        self.requests: list[_Request] = []  # taken into this batch (requeued if it is fenced)
        # (entity, new state or UNBORN, states shown to followers, messages handled)
        self.turns: list[tuple[_Live, object, list[object] | None, int]] = []
        self.results: list[tuple[Future, object]] = []
        self.failures: list[tuple[Future, Exception]] = []
        self.timers: list[_Timer] = []
        self.acks: list[asyncio.Future[None]] = []
        self.flushed: list[_Live] = []  # entities whose recent messages it writes

    def futures(self) -> Iterable[Future]:
        yield from self.acks
        yield from (f for f, _ in self.results)
        yield from (f for f, _ in self.failures)
        yield from (t.out.fut for t in self.timers if t.out.fut is not None)
