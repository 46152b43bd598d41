"""The durable dispatcher: the runtime core (`pachytype._runtime.dispatch`) with a
`Store` underneath, in group commits. LocalDisk runs it on SQLite, each
worker of a Postgres node on PostgreSQL (`pachytype._postgres.store`).

Design note
-----------
Rules, on top of the core's (one dispatcher, pure activations, all or
nothing per activation, fairness, passivation):

* **Nothing observable before commit.** The dispatcher builds a
  `CommitBatch` of plain values (encoded states, new mail, consumed ids,
  dead letters), awaits `Store.commit`, and only then applies what a caller
  can see: `send`s return, `call`s resolve or raise, followers get the new
  states, states become readable. Nothing anyone saw is ever rolled back.
* **Mail moves early, safely.** New mail (from `send`, from activations,
  from fired timers) enters its target's inbox while its batch is built,
  so it may be handled in that same batch or the next. That is safe
  because batches commit one at a time, in build order: a message is never
  consumed by a commit earlier than the one that stores it, and a crash
  loses a suffix of batches, never a batch without its predecessors.
* **Latest state.** While an entity's commit is in flight it is *busy*: it
  is not activated again until that commit is applied, so every activation
  starts from its predecessor's state, which is committed before the new
  one is.
* **Group commit.** One commit at a time: build, commit, apply. Whatever
  arrives meanwhile (sends, calls, fired timers) joins the next batch, so
  batches grow with load. A batch is bounded by `max_batch` activations
  and about `max_batch` new messages from outside; a `send` waits for at
  most the commit under way plus its own (no timers). Mail stored and
  consumed by the same batch is not written at all.
* **Calls first.** When `call`s wait, the next batch is a short one
  (`_CALL_BATCH` activations) that takes them and serves their entities
  before those with only fire-and-forget mail, so call latency stays low
  under a flood of sends. `send` applies backpressure: it waits while more
  than `max_backlog` messages sit in inboxes.
* **Ids.** Message ids come from one counter (resumed from the store), in
  build order; an entity consumes its mail in id order, so a store may keep
  one consumed cursor per entity (see `pachytype._store`).
* **Held entities** (state that cannot be loaded, `pachytype._core.held`;
  read again every `retry_held` seconds):
  never activated, their mail stays stored and unconsumed, `call` and
  `state` on them raise the load error.
* **Ownership and other writers** (the store's `news()`, see
  `pachytype._store`): between two commits, never during one, the
  dispatcher takes what the store rang for: scopes lost (their entities
  leave memory: inboxes, cached states, armed timers; their mail stays
  stored for the new owner), scopes gained (recovered as at `open`) and
  mail written by other processes (appended to inboxes). A commit refused
  as fenced (`FencedError`) is applied in no part: its outside requests go
  back in line, every entity leaves memory, and the store's next `news()`
  recovers every scope still owned. Mail whose sender in another process
  awaits an answer (`calls`) is answered in the commit that consumes it
  (`CommitBatch.answers`). LocalDisk's store owns one scope forever, so
  none of this happens there.
* **Memory.** Idle live records are dropped in bulk once more than
  `_LIVE_KEPT` exist; committed states are cached up to `cache_size`
  (least recently committed go first) and re-read from the store when
  needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Final, Protocol, TypeAlias

from pachytype._address import Address, Envelope, Key, Ref, _Envelope, make_ref, not_an_envelope
from pachytype._budget import DEFAULT_BUDGET
from pachytype._clock import Clock, Timer
from pachytype._codec import storable_text
from pachytype._core.deadletters import dead_row, raw_dead_row
from pachytype._core.envelopes import check_returned
from pachytype._core.held import RETRY_HELD, Held
from pachytype._core.journal import rebuild
from pachytype._core.timers import CANCEL, KeyedTimers, timer_dropped
from pachytype._core.turn import RECENT, UNBORN, Failure, StoreState, Turn, Unreadable, run_turn
from pachytype._deadletter import DeadLetter
from pachytype._errors import (
    ActivationError,
    EcosystemClosedError,
    InitError,
    PachytypeError,
    PoisonMessageError,
)
from pachytype._events import READ_BATCH, Signal, StoredEvent, tail
from pachytype._inbox import state_kept
from pachytype._registry import EntityType, Registry
from pachytype._runtime.dispatch import _SLICE, Runtime, address_of
from pachytype._store import (
    AnswerRow,
    CommitBatch,
    DeadRow,
    EntityRow,
    FencedError,
    Journal,
    MailRow,
    Recovery,
    Store,
    TimerRow,
)

log = logging.getLogger("pachytype.runtime")

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
        "recent",
        "recent_dirty",
        "scheduled",
        "urgent",
    )

    def __init__(self, address: Address[Any], etype: EntityType, id_text: str) -> None:
        self.key = address._key
        self.address = address
        self.etype = etype
        self.id_text = id_text
        self.inbox: deque[Mail] = deque()
        self.recent: deque[object] = deque(maxlen=RECENT)
        self.recent_dirty = False  # recent changed since it was last written
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

    __slots__ = ("acks", "failures", "requests", "results", "timers", "turns")

    def __init__(self) -> None:
        self.requests: list[_Request] = []  # taken into this batch (requeued if it is fenced)
        # (entity, new state or UNBORN, states shown to followers, messages handled)
        self.turns: list[tuple[_Live, object, list[object] | None, int]] = []
        self.results: list[tuple[Future, object]] = []
        self.failures: list[tuple[Future, Exception]] = []
        self.timers: list[_Timer] = []
        self.acks: list[asyncio.Future[None]] = []

    def futures(self) -> Iterable[Future]:
        yield from self.acks
        yield from (f for f, _ in self.results)
        yield from (f for f, _ in self.failures)
        yield from (t.out.fut for t in self.timers if t.out.fut is not None)


class DurableRuntime(Runtime):
    """The runtime core over a `Store`: group commits, effects after commit."""

    def __init__(
        self,
        registry: Registry,
        store: Store,
        codec: Codec,
        *,
        max_batch: int = MAX_BATCH,
        cache_size: int = CACHE_SIZE,
        max_backlog: int = MAX_BACKLOG,
        name: str = "LocalDisk",
        activation_budget: float = DEFAULT_BUDGET,
        retry_held: float = RETRY_HELD,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(registry, activation_budget=activation_budget, clock=clock)
        self.store = store
        self.codec = codec
        self.max_batch = max_batch
        self.cache_size = cache_size
        self.max_backlog = max_backlog
        self.name = name
        self.retry_held = retry_held
        self._held_retries: set[asyncio.TimerHandle] = set()
        self._cache: dict[Key, object] = {}
        self._dlive: dict[Key, _Live] = {}
        self._dready: deque[_Live] = deque()
        self._urgent: deque[_Live] = deque()
        self._incoming: deque[_Request] = deque()
        self._calls: deque[_Request] = deque()
        self._fired: list[_Timer] = []
        self._armed: dict[int, _Timer] = {}
        self._dkeyed: KeyedTimers[_Timer] = KeyedTimers()
        """Pending keyed timers, armed or in a batch not yet applied (`pachytype._core.timers`)."""
        self._to_load: list[_Live] = []
        self._id_texts: dict[Key, str] = {}
        self._next_id = 1
        self._commits = 0
        self._next_sweep = _GC_EVERY  # the commit that next sets forget_below
        self._short = False
        self._live_limit = _LIVE_KEPT
        self._backlog = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._pending: _Pending | None = None
        self._failure: BaseException | None = None
        self._startup = CommitBatch()
        self.max_attempts = MAX_ATTEMPTS
        self._suspects: dict[int, int] = {}  # mail id -> attempts (after a crash)
        self._cleared: set[int] = set()  # suspects whose next attempt is counted
        self._waiting: list[_Live] = []  # entities whose next mail is an uncleared suspect
        self._seqs: dict[Key, int] = {}
        """Event count of each event-sourced entity whose state is cached."""
        self.event_signal = Signal()
        """Bumped after each commit that appended events (streams wait on it)."""
        self._recent_rows: list[EntityRow] = []  # recent messages of passivated entities
        self._news = False  # the store rang: `news()` has something
        self.on_failure: Callable[[BaseException], None] | None = None
        """Told once when the store fails for good (a Postgres node then hands
        its partitions over instead of keeping leases nobody serves)."""
        self.gate: Callable[[str, type, int], None] | None = None
        """Raises if a message of a class must not be sent to an entity type's
        scope (Postgres during a rolling deploy, `pachytype._postgres.deploy`)."""
        self._owned: frozenset[int] | None = None  # scopes owned (None: all of them)
        self._remote: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset()
        """Entities followed in other processes (the store's live set)."""
        self._answer_ids: set[int] = set()  # mail whose caller (elsewhere) awaits an answer

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        """Open the store, put recovered mail back in inboxes, arm timers, start."""
        _ = self.registry.types
        self._recover(await self.store.open(self.registry.fingerprint, self._ring))
        self._owned = self.store.owned()
        self._remote = self.store.followed()
        self.start()

    def _recover(self, recovery: Recovery) -> None:
        """Put what the store recovered (at open, or scopes gained) in inboxes, arm timers."""
        self._next_id = max(self._next_id, recovery.next_id)
        self._suspects.update(recovery.suspects)
        if recovery.calls:
            self._answer_ids.update(recovery.calls)
        for row in recovery.mail:
            self._recover_mail(row)
        for timer_row in recovery.timers:
            self._recover_timer(timer_row)

    def _ring(self) -> None:
        """The store's bell: `news()` has something (taken between two commits)."""
        self._news = True
        self._wake_up()

    async def _take_news(self) -> None:
        """Ownership changes and mail from other processes (no commit in flight)."""
        self._news = False
        news = await self.store.news()
        self._owned = self.store.owned()
        if news.lost:
            self._drop(news.lost)
        if news.gained is not None:
            self._recover(news.gained)
        if news.calls:
            self._answer_ids.update(news.calls)
        for row in news.mail:
            self._recover_mail(row)
        for timer_row in news.timers:
            self._recover_timer(timer_row)

    async def stop(self) -> None:
        """Stop the dispatcher, fail what waits, close the store."""
        await super().stop()
        for handle in self._held_retries:
            handle.cancel()
        self._held_retries.clear()
        closed = EcosystemClosedError(
            f"the ecosystem closed before this message was handled; if it was sent, it is "
            f"stored and will be delivered when the {self.name} database is opened again"
        )
        self._fail_waiting(closed)
        self.event_signal.close()
        await self._save_recent()
        self._dlive.clear()
        self._dready.clear()
        self._urgent.clear()
        await self.store.close()

    async def _save_recent(self) -> None:
        """At a clean close, write the recent messages not written yet."""
        if self._failure is not None:
            return
        rows = [self._recent_row(live) for live in self._dlive.values() if live.recent_dirty]
        rows.extend(self._recent_rows)
        if rows:
            with contextlib.suppress(Exception):  # losing context must not stop a close
                await self.store.commit(CommitBatch(entities=rows))

    def _fail_waiting(self, error: BaseException) -> None:
        futures: list[Future] = []
        for live in self._dlive.values():
            futures.extend(fut for _, _, fut, _ in live.inbox if fut is not None)
        for request in [*self._incoming, *self._calls]:
            if request.ack is not None:
                futures.append(request.ack)
            futures.extend(o.fut for o in request.outs if o.fut is not None)
        for timer in [*self._armed.values(), *self._fired]:
            if timer.handle is not None:
                timer.handle.cancel()
            if timer.out.fut is not None:
                futures.append(timer.out.fut)
        if self._pending is not None:
            futures.extend(self._pending.futures())
        self._incoming.clear()
        self._calls.clear()
        self._armed.clear()
        self._fired.clear()
        self._dkeyed.clear()
        self._pending = None
        for fut in futures:
            if not fut.done():
                fut.set_exception(error)
        self._drained.set()

    def _check_open(self) -> None:
        if self._failure is not None:
            raise PachytypeError(
                f"the {self.name} store failed ({type(self._failure).__name__}: "
                f"{self._failure}); close the ecosystem and open it again"
            ) from self._failure
        if self._task is None:
            raise EcosystemClosedError(
                f"the ecosystem is not open: use `async with {self.name}(path, REGISTRY) as eco:`"
            )

    # -- recovery ------------------------------------------------------------

    def _decode_out(self, type_name: str, id_text: str, payload: bytes) -> Out:
        etype = self.registry.get(type_name, id_text)
        id = self.codec.decode_id(type_name, id_text)
        return Out(
            address_of(etype, id),
            etype,
            id_text,
            self._decode_message(etype, id, payload),
            payload,
            0.0,
            None,
        )

    def _decode_message(self, etype: EntityType, id: Hashable, payload: bytes) -> object:
        message = self.codec.decode_message(etype.name, payload, id)
        etype.check_message(id, message)
        return message

    def _recover_mail(self, row: MailRow) -> None:
        mail_id, type_name, id_text, payload = row
        try:
            etype = self.registry.get(type_name, id_text)
            id = self.codec.decode_id(type_name, id_text)
        except Exception as error:
            # No mail of this (type, id) can ever be delivered: each row is a
            # dead letter now, consumed in id order.
            self._unreadable(mail_id, type_name, id_text, payload, error)
            return
        try:
            message: object = self._decode_message(etype, id, payload)
        except Exception as error:
            # The entity exists and may have earlier mail waiting (it may be
            # held): the bad row keeps its place in the inbox and becomes a
            # dead letter when its turn comes, so the consumed cursor never
            # passes mail that is still waiting.
            message = Unreadable(payload, error)
        attempts = self._suspects.get(mail_id, 0)
        if attempts >= self.max_attempts:
            # It was running each time a session died: dead-letter it unrun.
            del self._suspects[mail_id]
            message = Unreadable(payload, PoisonMessageError(etype.name, id, attempts))
        out = Out(address_of(etype, id), etype, id_text, message, payload, 0.0, None)
        self._id_texts[out.address._key] = id_text
        self._put(out, mail_id)

    def _recover_timer(self, row: TimerRow) -> None:
        timer_id, type_name, id_text, payload, due, tkey = row
        try:
            out = self._decode_out(type_name, id_text, payload)
        except Exception as error:
            # Deleted with its dead letter; no entity's consumed cursor moves
            # (a timer id is not in any entity's mail order).
            self._startup.dead.append(raw_dead_row(type_name, id_text, payload, error, None, 0, []))
            self._startup.fired.append(timer_id)
            return
        out.tkey = tkey
        timer = _Timer(timer_id, out, due)
        if tkey is not None:  # (from another process: it is the later one)
            old = self._dkeyed.schedule(out.address._key, tkey, timer)
            self._drop_timer(old, self._startup, cancelled=False)
        self._arm(timer)

    def _unreadable(
        self, mail_id: int, type_name: str, id_text: str, payload: bytes, error: Exception
    ) -> None:
        if mail_id in self._answer_ids:
            self._answer_ids.discard(mail_id)
            self._startup.answers.append(_error_answer(mail_id, 0, error))
        self._startup.dead.append(raw_dead_row(type_name, id_text, payload, error, None, 0, []))
        self._startup.consumed.append(mail_id)
        self._startup.entities.append((type_name, id_text, None, 0, mail_id, None))

    # -- entry points --------------------------------------------------------

    def _id_text(self, etype: EntityType, address: Address[Any]) -> str:
        key = address._key
        text = self._id_texts.get(key)
        if text is None:
            if len(self._id_texts) > self.cache_size:
                self._id_texts.clear()
            text = self._id_texts[key] = self.codec.encode_id(etype.name, address._id)
        return text

    def _outs(self, envelopes: Iterable[Envelope[Any]]) -> list[Out]:
        """Check and encode envelopes from outside (raises before anything is sent)."""
        types = self.registry.types
        encode = self.codec.encode_message
        id_text = self._id_text
        outs = []
        for env in envelopes:
            if type(env) is not _Envelope:
                raise not_an_envelope(env)
            to = env._to
            etype = types.get(to._entity_type)
            message = env._message
            if etype is None or type(message) not in etype.message_set:
                self.resolve(env)  # raises, with the reason
                raise AssertionError("unreachable")
            name = etype.name
            outs.append(
                Out(
                    to,
                    etype,
                    id_text(etype, to),
                    message,
                    encode(name, message),
                    env._delay,
                    None,
                    env._tkey,
                )
            )
        return outs

    def _submit(self, request: _Request) -> None:
        # Calls jump the queue of sends: the next batch takes them all.
        (self._incoming if request.ack is not None else self._calls).append(request)
        self._wake_up()

    def _wake_up(self) -> None:
        if not self._wake.is_set():
            self._wake.set()
            self._idle.clear()

    async def send_durably(self, envelopes: Iterable[Envelope[Any]]) -> None:
        """Send envelopes; return once they are committed."""
        self._check_open()
        envs = envelopes if isinstance(envelopes, list | tuple) else list(envelopes)
        if len(envs) <= _ENCODE_SLICE:
            outs = self._outs(envs)
        else:
            # Encode a big send in slices, letting calls and the dispatcher run.
            outs = []
            for at in range(0, len(envs), _ENCODE_SLICE):
                outs.extend(self._outs(envs[at : at + _ENCODE_SLICE]))
                await asyncio.sleep(0)
            self._check_open()
        if not outs:
            return
        while self._backlog > self.max_backlog:
            self._drained.clear()
            await self._drained.wait()
            self._check_open()
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._submit(_Request(outs, ack))
        await ack

    def call(self, envelope: Envelope[Any]) -> Future:
        """Commit one envelope; the future gets the target's state after it."""
        self._check_open()
        (out,) = self._outs((envelope,))
        out.fut = asyncio.get_running_loop().create_future()
        self._submit(_Request([out], None))
        return out.fut

    async def redeliver(self, dead: DeadLetter) -> None:
        """Re-enqueue a dead letter's message; it leaves the dead letters in the
        same commit."""
        self._check_open()
        if isinstance(dead.message, bytes):
            raise PachytypeError(
                f"dead letter #{dead.seq} for {dead.to!r} holds a message that cannot be "
                f"decoded ({dead.error_type}: {dead.error}); fix the message classes so it "
                f"decodes, then redeliver it"
            )
        await self._check_dead(dead, "redeliver")
        (out,) = self._outs((_Envelope(dead.to, dead.message, 0.0),))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._submit(_Request([out], ack, redeliver=dead.seq))
        await ack

    async def discard(self, dead: DeadLetter) -> None:
        """Delete a dead letter without delivering its message."""
        self._check_open()
        await self._check_dead(dead, "discard")
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._submit(_Request([], ack, redeliver=dead.seq))
        await ack

    async def forget_state(self, ref: Address[Any]) -> None:
        """Delete an entity's stored state (an ask's inbox, once its ask is
        over: `pachytype._inbox`); return once that is committed."""
        self._check_open()
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._submit(_Request([], ack, forget=ref))
        await ack

    def _forget_entity(self, ref: Address[Any], batch: CommitBatch) -> None:
        etype = self.registry.get(ref.entity_type, ref.id)
        key = ref._key
        row = (etype.name, self._id_text(etype, ref))
        batch.forgotten.append(row)
        self._cache.pop(key, None)
        live = self._dlive.get(key)
        if live is not None and not live.inbox and not live.scheduled:
            del self._dlive[key]
        if self._recent_rows:
            self._recent_rows = [r for r in self._recent_rows if (r[0], r[1]) != row]

    async def _check_dead(self, dead: DeadLetter, what: str) -> None:
        if not any(row.id == dead.seq for row in await self.store.dead_letters()):
            raise PachytypeError(
                f"cannot {what} dead letter #{dead.seq} for {dead.to!r}: it is not among "
                f"the {self.name} dead letters (already redelivered or discarded); list "
                f"them again with `await eco.dead_letters()`"
            )

    async def read_state(self, ref: Address[Any]) -> Any:
        """The entity's committed state (its `init` state if none is stored)."""
        self._check_open()
        etype = self.registry.get(ref.entity_type, ref.id)
        key = ref.key
        if key in self._cache:
            state = self._cache[key]
        elif etype.event_sourced:
            id_text = self._id_text(etype, ref)
            journals = await self.store.load_journals([(etype.name, id_text)])
            if key in self._cache:  # committed while we read: newer
                state = self._cache[key]
            else:
                state, _ = self._rebuild(etype, ref.id, journals.get((etype.name, id_text)))
        else:
            id_text = self._id_text(etype, ref)
            found = await self.store.load_states([(etype.name, id_text)])
            stored = found.get((etype.name, id_text))
            if key in self._cache:  # committed while we read: newer
                state = self._cache[key]
            elif stored is None or stored[0] is None:
                state = UNBORN
            else:
                state = self.codec.decode_state(etype.name, ref.id, stored[0], stored[1])
        if isinstance(state, Held):
            raise state.error
        if state is UNBORN:
            try:
                return etype.instance.init(ref.id)
            except Exception as error:
                raise InitError(etype.name, ref.id, error) from error
        return state

    async def follow(self, ref: Address[Any]) -> AsyncIterator[Any]:
        self._check_open()
        state = await self.read_state(ref)
        cached = self._cache.get(ref.key, UNBORN)
        if cached is not UNBORN and not isinstance(cached, Held):
            state = cached  # committed while we read; nothing awaits from here on
        async for item in self._followed(ref, state):
            yield item

    def entity_events(
        self, etype: EntityType, ref: Address[Any], after: int
    ) -> AsyncIterator[tuple[int, Any]]:
        """`(seq, event)` of one event-sourced entity after `after`, then live."""
        self._check_open()
        store, codec, name, id = self.store, self.codec, etype.name, ref.id
        id_text = self._id_text(etype, ref)

        async def read(position: int) -> list[tuple[int, object]]:
            self._check_open()
            rows = await store.read_events(name, id_text, position, READ_BATCH)
            return [(seq, codec.decode_event(name, id, data)) for _, _, seq, data in rows]

        return tail(self.event_signal, read, _first, after)

    def type_events(self, etype: EntityType, after: int) -> AsyncIterator[StoredEvent[Any]]:
        """Every event of every entity of an event-sourced type after log
        position `after`, then live."""
        self._check_open()
        store, codec, name = self.store, self.codec, etype.name

        async def read(position: int) -> list[StoredEvent[Any]]:
            self._check_open()
            out: list[StoredEvent[Any]] = []
            for at, id_text, seq, data in await store.read_events(name, None, position, READ_BATCH):
                id = codec.decode_id(name, id_text)
                event = codec.decode_event(name, id, data)
                out.append(StoredEvent(at, address_of(etype, id), seq, event))  # type: ignore[arg-type]
            return out

        return tail(self.event_signal, read, _position, after)

    async def stored_dead_letters(self) -> list[DeadLetter]:
        """Every persisted dead letter, oldest first, decoded where possible."""
        self._check_open()
        return [decode_dead(self.registry, self.codec, r) for r in await self.store.dead_letters()]

    async def quiesce(self) -> None:
        """Wait until every ready message is handled and committed (raises once
        the store failed: the dispatcher is gone, nothing will settle)."""
        while not self._idle.is_set() or self._wake.is_set():
            self._check_open()
            await self._idle.wait()
            await asyncio.sleep(0)
        self._check_open()

    # -- inboxes and timers ----------------------------------------------------

    def _live_for(self, out: Out) -> _Live:
        key = out.address._key
        live = self._dlive.get(key)
        if live is None:
            live = self._dlive[key] = _Live(out.address, out.etype, out.id_text)
        return live

    def _put(self, out: Out, mail_id: int) -> None:
        """Put a numbered message in its target's inbox and schedule the target."""
        key = out.address._key
        live = self._dlive.get(key)
        if live is None:
            live = self._dlive[key] = _Live(out.address, out.etype, out.id_text)
        fut = out.fut
        live.inbox.append((mail_id, out.message, fut, out.payload))
        self._backlog += 1
        if fut is not None and not live.urgent and not live.busy:
            live.urgent = live.scheduled = True
            self._urgent.append(live)
            self._wake_up()
        elif not live.scheduled:
            live.scheduled = True
            self._dready.append(live)
            self._wake_up()

    def _arm(self, timer: _Timer) -> None:
        if timer.dropped:
            return  # replaced or cancelled while its batch was committing
        self._armed[timer.id] = timer

        def fire() -> None:
            if self._armed.pop(timer.id, None) is not None:
                if timer.out.tkey is not None:
                    self._dkeyed.fired(timer.out.address._key, timer.out.tkey, timer)
                self._fired.append(timer)
                self._wake_up()

        timer.handle = self.clock.call_at(timer.due, fire)

    # -- the dispatcher --------------------------------------------------------

    async def _dispatch(self) -> None:
        try:
            while True:
                try:
                    if self._news:
                        await self._take_news()
                    if self._waiting:
                        await self._clear_suspects()
                    built = self._build()
                    # Pending before any await: if the store fails in `_load`, the
                    # built batch's waiters are failed too, not forgotten.
                    self._pending = None if built is None else built[1]
                    if self._to_load:
                        await self._load()
                    if built is not None:
                        batch, pending = built
                        await self.store.commit(batch)
                        self._pending = None
                        self._apply(pending, bool(batch.events))
                        # Let senders and callers run between two commits.
                        await asyncio.sleep(0)
                        continue
                except FencedError:
                    # Ownership moved under us (or the outcome of a store call
                    # is unknown): apply nothing, reload what is still ours.
                    self._fenced(self._pending or _Pending())
                    continue
                self._wake.clear()
                if (
                    self._news
                    or self._urgent
                    or self._dready
                    or self._incoming
                    or self._calls
                    or self._fired
                    or self._waiting
                ):
                    await asyncio.sleep(0)
                    continue
                self._idle.set()
                await self._wake.wait()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # The store failed: nothing more can be made durable. Waiters get
            # the error, later calls a clear one; close() still works. Logged
            # whole: an unexpected error here is a bug to be seen, not a
            # runtime that quietly stops.
            log.error("the %s runtime stopped: its store failed", self.name, exc_info=error)
            self._failure = error
            self._fail_waiting(error)
            self._idle.set()
            if self.on_failure is not None:
                self.on_failure(error)

    def _build(self) -> tuple[CommitBatch, _Pending] | None:
        batch, self._startup = self._startup, CommitBatch()
        if self._recent_rows:
            batch.entities.extend(self._recent_rows)
            self._recent_rows = []
        pending = _Pending()
        budget = self.max_batch
        short = bool(self._calls) and not self._short
        self._short = short  # never two short batches in a row: sends must progress
        if self._calls:
            # Waiting callers first: their mail and (urgent queue) their turns.
            self._take_requests(self._calls, batch, pending, len(self._calls))
        if short:
            budget = _CALL_BATCH
        else:
            if self._incoming:
                self._take_requests(self._incoming, batch, pending, self.max_batch)
            if self._fired:
                fired, self._fired = self._fired, []
                for timer in fired:
                    if timer.id in self._answer_ids:
                        # A delayed call from another process: its row (and
                        # its caller) stay; it is consumed under its own id.
                        self._put(timer.out, timer.id)
                        continue
                    batch.fired.append(timer.id)
                    self._number(timer.out, batch, pending, due_now=True)
        cache = self._cache
        for queue in (self._urgent, self._dready):
            while queue and budget > 0:
                live = queue.popleft()
                live.urgent = False
                if live.busy or not live.inbox:
                    continue  # a stale entry: served from the other queue
                state = cache.get(live.key, cache)
                if state is cache:
                    self._to_load.append(live)
                elif type(state) is Held:
                    self._hold(live, state)
                else:
                    live.busy = True
                    budget -= self._turn_durably(live, state, batch, pending, _SLICE)
        if not (batch or pending.acks or pending.turns):
            return None
        if batch.mail and batch.consumed:
            # Mail stored and consumed by the same transaction need not be
            # written at all: the consumer's cursor and state say it all.
            gone = set(batch.consumed)
            batch.mail = [row for row in batch.mail if row[0] not in gone]
        self._commits += 1
        if self._commits >= self._next_sweep:
            batch.forget_below = self._low_water()
            spacing = max(_GC_EVERY, len(self._dlive) // _SCANS_PER_COMMIT)
            self._next_sweep = self._commits + spacing
        return batch, pending

    def _take_requests(
        self, incoming: deque[_Request], batch: CommitBatch, pending: _Pending, limit: int
    ) -> None:
        taken = 0
        mail = batch.mail
        owned = self._owned  # None: every entity is ours (the inline path below)
        lives = self._dlive
        ready = self._dready
        while incoming and taken < limit:
            request = incoming.popleft()
            next_id = self._next_id
            # The common case (no delay, no call) inline: this loop runs once
            # per message sent from outside.
            for out in request.outs:
                if (
                    out.delay > 0
                    or out.fut is not None
                    or owned is not None
                    or out.tkey is not None
                ):
                    self._backlog += next_id - self._next_id
                    self._next_id = next_id
                    self._number(out, batch, pending)
                    next_id = self._next_id
                    continue
                mail.append((next_id, out.etype.name, out.id_text, out.payload))
                live = lives.get(out.address._key)
                if live is None:
                    live = lives[out.address._key] = _Live(out.address, out.etype, out.id_text)
                live.inbox.append((next_id, out.message, None, out.payload))
                next_id += 1
                if not live.scheduled:
                    live.scheduled = True
                    ready.append(live)
            self._backlog += next_id - self._next_id  # the inline ones
            self._next_id = next_id
            taken += len(request.outs)
            pending.requests.append(request)
            if request.redeliver is not None:
                batch.redelivered.append(request.redeliver)
            if request.forget is not None:
                self._forget_entity(request.forget, batch)
            if request.ack is not None:
                pending.acks.append(request.ack)

    def _number(
        self, out: Out, batch: CommitBatch, pending: _Pending, *, due_now: bool = False
    ) -> None:
        """Give `out` an id and put it in the batch: in an inbox now, or as a
        timer; a keyed one replaces (or, message `CANCEL`, cancels) the
        pending timer of its key first (`pachytype._core.timers`)."""
        key = out.tkey
        timer: _Timer | None = None
        if key is not None and not due_now:
            target = out.address._key
            if out.message is CANCEL:
                self._drop_timer(self._dkeyed.cancel(target, key), batch, cancelled=True)
                if self._owned is not None and not self._owns(out):
                    batch.cancels.append((out.etype.name, out.id_text, key))  # its owner's
                return
            if out.delay > 0:
                timer = _Timer(0, out, self.clock.now() + out.delay)
            self._drop_timer(self._dkeyed.schedule(target, key, timer), batch, cancelled=False)
        new_id = self._next_id
        self._next_id = new_id + 1
        owned = self._owned is None or self._owns(out)
        if out.delay > 0 and not due_now:
            due = self.clock.now() + out.delay
            batch.timers.append((new_id, out.etype.name, out.id_text, out.payload, due, key))
            if timer is not None:
                timer.id = new_id
                timer.due = due
            if owned:
                pending.timers.append(_Timer(new_id, out, due) if timer is None else timer)
        elif owned:
            batch.mail.append((new_id, out.etype.name, out.id_text, out.payload))
            self._put(out, new_id)
        else:
            # Another owner's entity: stored only; the store tells its owner.
            batch.mail.append((new_id, out.etype.name, out.id_text, out.payload))
            if out.fut is not None and not out.fut.done():
                out.fut.set_exception(self._elsewhere(out))

    def _owns(self, out: Out) -> bool:
        assert self._owned is not None
        return self.store.scope_of(out.etype.name, out.id_text) in self._owned

    def _elsewhere(self, out: Out) -> PachytypeError:
        return PachytypeError(
            f"entity {out.etype.name!r} {out.address._id!r} is owned by another process "
            f"of this {self.name} store: its message is stored and delivered there, but "
            f"this runtime cannot answer for it; call it through the ecosystem"
        )

    def _drop_timer(self, timer: _Timer | None, batch: CommitBatch, *, cancelled: bool) -> None:
        """A keyed timer replaced or cancelled before it fell due: never delivered."""
        if timer is None:
            return
        timer.dropped = True
        if timer.handle is not None:
            timer.handle.cancel()
        self._armed.pop(timer.id, None)
        batch.cancelled.append(timer.id)  # deleted after this batch's new timers are stored
        fut = timer.out.fut
        if fut is not None and not fut.done():
            fut.set_exception(timer_dropped(timer.out.address, timer.out.tkey or "", cancelled))

    def _low_water(self) -> int:
        """The smallest id of any message not yet consumed (all of them are in memory)."""
        low = self._next_id
        for live in self._dlive.values():
            if live.inbox and live.inbox[0][0] < low:
                low = live.inbox[0][0]
        return low

    def _hold(self, live: _Live, held: Held) -> None:
        """Leave a held entity's mail waiting; its callers get the load error."""
        live.scheduled = False
        for i, (mail_id, message, fut, payload) in enumerate(live.inbox):
            if fut is not None:
                if not fut.done():
                    fut.set_exception(held.error)
                live.inbox[i] = (mail_id, message, None, payload)

    def _retry_later(self, live: _Live, held: Held) -> None:
        """Read a held entity's state again after `retry_held` seconds: a repaired
        row or a deploy that can load it releases it, and its mail goes on in order."""
        loop = asyncio.get_running_loop()

        def retry() -> None:
            self._held_retries.discard(handle)
            if self._cache.get(live.key) is held:
                del self._cache[live.key]
                if live.inbox and not live.scheduled:
                    live.scheduled = True
                    self._dready.append(live)
                    self._wake_up()

        handle = loop.call_later(self.retry_held, retry)
        self._held_retries.add(handle)

    def _restore_recent(self, live: _Live, stored: tuple[bytes, ...]) -> None:
        """Give an entity loaded from disk the recent messages it had before, so a
        dead letter after a restart still shows them (undecodable ones as bytes)."""
        for payload in stored:
            try:
                message = self._decode_message(live.etype, live.address._id, payload)
            except Exception as error:
                message = Unreadable(payload, error)
            live.recent.append(message)

    async def _load(self) -> None:
        """Read the states of entities about to run whose state is not cached."""
        # A bounded slice per call: reads block the loop, like commits.
        lives, self._to_load = self._to_load[: self.max_batch], self._to_load[self.max_batch :]
        keys = [(live.etype.name, live.id_text) for live in lives]
        journaled = [k for live, k in zip(lives, keys, strict=True) if live.etype.event_sourced]
        skip = set(journaled)
        rest = [k for k in keys if k not in skip] if journaled else keys
        found = await self.store.load_states(rest) if rest else {}
        journals = await self.store.load_journals(journaled) if journaled else {}
        for live, key in zip(lives, keys, strict=True):
            if live.etype.event_sourced:
                state, seq = self._rebuild(live.etype, live.address._id, journals.get(key))
                if type(state) is Held:
                    self._retry_later(live, state)
                self._cache[live.key] = state
                self._seqs[live.key] = seq
                self._dready.append(live)
                continue
            stored = found.get(key)
            if stored is not None and stored[2] and not live.recent:
                self._restore_recent(live, stored[2])
            if stored is None or stored[0] is None:
                self._cache[live.key] = UNBORN
            else:
                try:
                    state = self.codec.decode_state(
                        live.etype.name, live.address._id, stored[0], stored[1]
                    )
                except Exception as error:
                    state = Held(error)
                    self._retry_later(live, state)
                self._cache[live.key] = state
            self._dready.append(live)
        self._wake_up()

    async def _clear_suspects(self) -> None:
        """After a crash, count an attempt for the next suspects before they run.

        Suspects never run before run in chunks of up to `max_batch`; one that
        was running when a session died runs alone, so a message that kills
        its process is isolated after one crash and dead-lettered after
        `max_attempts`, while the rest of its chunk commits."""
        order = sorted(i for i in self._suspects if i not in self._cleared)
        chunk: list[int] = []
        if order and self._suspects[order[0]] > 0:
            chunk = order[:1]
        else:
            for mail_id in order[: self.max_batch]:
                if self._suspects[mail_id] > 0:
                    break
                chunk.append(mail_id)
        if chunk:
            await self.store.commit(CommitBatch(attempted=chunk))
            self._cleared.update(chunk)
        waiting, self._waiting = self._waiting, []
        for live in waiting:
            if live.inbox and not live.scheduled:
                live.scheduled = True
                self._dready.append(live)

    def _suspect_limit(self, live: _Live, n: int) -> int:
        """How many of the next `n` messages may run: up to the first suspect
        whose attempt is not counted yet (those run are no longer suspects)."""
        suspects, cleared, inbox = self._suspects, self._cleared, live.inbox
        for j in range(n):
            mail_id = inbox[j][0]
            if mail_id in suspects:
                if mail_id not in cleared:
                    return j
                del suspects[mail_id]
                cleared.discard(mail_id)
        return n

    def _rebuild(
        self, etype: EntityType, id: Hashable, journal: Journal | None
    ) -> tuple[object, int]:
        return rebuild_journal(self.codec, etype, id, journal)

    def _turn_durably(
        self, live: _Live, state: object, batch: CommitBatch, pending: _Pending, limit: int
    ) -> int:
        """Run up to `limit` messages of one entity (`run_turn`) into `batch`; returns how many."""
        etype = live.etype
        inbox = live.inbox
        n = min(len(inbox), limit)
        if self._suspects:
            n = self._suspect_limit(live, n)
            if n == 0:  # its next message waits for its attempt to be counted
                live.busy = live.scheduled = False
                self._waiting.append(live)
                self._wake_up()
                return 0
        items = [inbox.popleft() for _ in range(n)]
        futures = [item[2] for item in items]
        followed = bool(self._followers) and live.key in self._followers
        answers = self._answer_ids
        answered = bool(answers) and any(item[0] in answers for item in items)
        remote = bool(self._remote) and (etype.name, live.id_text) in self._remote
        calls = answered or remote or futures.count(None) != n
        journaled = etype.event_sourced
        turn = run_turn(
            etype,
            live.address,
            state,
            [item[1] for item in items],
            live.recent,
            self._route_durably,
            store_state=self._state_encoder(etype, live.address._id),
            keep_states=calls or followed,
            budget=self.activation_budget,
            store_event=self._event_encoder(etype, live.address._id) if journaled else None,
            events_before=self._seqs.get(live.key, 0) if journaled else 0,
            keep_events=journaled,
        )
        if journaled:
            self._journal(live, turn.events, turn.seq, turn.snapshot, batch)
        failed = {failure.index for failure in turn.failures}
        for failure in turn.failures:
            self._fail(live, pending, batch, failure, futures[failure.index])
        shown: list[object] | None = [] if followed else None
        states = turn.states
        if states is not None:
            for i, fut in enumerate(futures):
                if i in failed:
                    continue
                if fut is not None:
                    pending.results.append((fut, states[i]))
                if shown is not None:
                    shown.append(states[i])
        if answered or remote:
            self._answer(live, items, failed, turn, batch, remote)
        for out in turn.routed:
            self._number(out, batch, pending)
        last = items[-1][0]
        data = turn.stored if turn.changed and not journaled else None
        assert data is None or type(data) is bytes
        if followed or remote or state_kept(etype.name, False):
            live.recent_dirty = True
            batch.entities.append((etype.name, live.id_text, data, etype.state_version, last, None))
        else:  # an inbox nobody follows: its ask is over, nothing is stored (`pachytype._inbox`)
            turn.changed = False
            if self._owned is not None:
                # (unless it became followed in another process: the store checks
                # every entity of the batch against its followers)
                batch.entities.append((etype.name, live.id_text, None, 0, last, None))
        if n == 1:
            batch.consumed.append(last)
        else:
            batch.consumed.extend([item[0] for item in items])
        pending.turns.append((live, turn.state if turn.changed else UNBORN, shown, n))
        self._backlog -= n
        self.activations += n
        return n

    def _answer(
        self,
        live: _Live,
        items: list[Mail],
        failed: set[int],
        turn: Turn,
        batch: CommitBatch,
        remote: bool,
    ) -> None:
        """Answers to callers in other processes, and the states their followers
        read (`remote`), into the batch that commits them."""
        etype, answers = live.etype, self._answer_ids
        name, version, states = etype.name, etype.state_version, turn.states
        errors = {f.index: f.error for f in turn.failures}
        last_ok = max((i for i in range(len(items)) if i not in failed), default=-1)
        for i, item in enumerate(items):
            asked = item[0] in answers
            if not (asked or remote):
                continue
            if i in failed:
                if asked:
                    answers.discard(item[0])
                    batch.answers.append(_error_answer(item[0], version, errors[i]))
                continue
            assert states is not None
            if i == last_ok and turn.changed and not etype.event_sourced:
                assert type(turn.stored) is bytes
                data: bytes = turn.stored
            else:
                data = self.codec.encode_state(name, states[i])
            if asked:
                answers.discard(item[0])
                batch.answers.append((item[0], data, version, None, None, None))
            if remote:
                batch.history.append((name, live.id_text, data, version))

    def _journal(
        self,
        live: _Live,
        events: list[tuple[int, int, object, object]],
        seq: int,
        snapshot: object,
        batch: CommitBatch,
    ) -> None:
        """Put an event-sourced turn's events (and snapshot) in the batch."""
        name, id_text = live.etype.name, live.id_text
        batch.events.extend([(name, id_text, n, data) for _, n, _, data in events])  # type: ignore[misc]
        if type(snapshot) is bytes:
            batch.snapshots.append((name, id_text, seq, snapshot, live.etype.state_version))
        # Set now: the entity is busy until this batch commits (a failed commit
        # stops the store), so no turn reads it before then.
        self._seqs[live.key] = seq

    def _event_encoder(self, etype: EntityType, id: Hashable) -> StoreState:
        codec = self.codec
        name = etype.name

        def store(event: object) -> bytes:
            data = codec.encode_event(name, event, id)
            # What cannot be read back must not be written: replay would hold the entity.
            codec.decode_event(name, id, data)
            return data

        return store

    def _state_encoder(self, etype: EntityType, id: Hashable) -> StoreState:
        # Encoded and decoded back: what cannot be read back must not be
        # written (it would hold the entity at its next load).
        encode = self.codec.encode_state_checked
        name = etype.name

        def store(state: object) -> bytes:
            return encode(name, state, id)

        return store

    def _route_durably(self, sender: Address[Any], env: object) -> Out:
        to, etype, message, delay, key = check_returned(self.registry, sender, env)
        payload = b"" if message is CANCEL else self.codec.encode_message(etype.name, message)
        id_text = self._id_text(etype, to)
        if self.gate is not None:  # raises: the activation fails, nothing is sent
            self.gate(etype.name, type(message), self.store.scope_of(etype.name, id_text))
        return Out(to, etype, id_text, message, payload, delay, None, key)

    def _fail(
        self,
        live: _Live,
        pending: _Pending,
        batch: CommitBatch,
        failure: Failure,
        fut: Future | None,
    ) -> None:
        etype = live.etype
        codec = self.codec
        batch.dead.append(
            dead_row(
                etype.name,
                live.id_text,
                failure,
                etype.state_version,
                codec.encode_message,
                codec.encode_state,
            )
        )
        if fut is not None:
            error = ActivationError(etype.name, live.address._id, failure.message, failure.error)
            error.__cause__ = failure.error
            pending.failures.append((fut, error))

    def _apply(self, pending: _Pending, events: bool = False) -> None:
        """A batch is durable: make its effects visible (`events`: it appended events)."""
        if events:
            self.event_signal.notify()
        cache = self._cache
        followers = self._followers
        ready = self._dready
        for live, state, followed, _ in pending.turns:
            key = live.key
            if state is not UNBORN:
                cache.pop(key, None)
                cache[key] = state
                if followers and key in followers:
                    for q in followers[key]:
                        for s in followed or (state,):
                            q.put_nowait(s)
            live.busy = False
            if live.inbox:
                ready.append(live)
            else:
                live.scheduled = False
        for fut, value in pending.results:
            if not fut.done():
                fut.set_result(value)
        for fut, failure in pending.failures:
            if not fut.done():
                fut.set_exception(failure)
        for timer in pending.timers:
            self._arm(timer)
        for ack in pending.acks:
            if not ack.done():
                ack.set_result(None)
        if ready:
            self._wake_up()
        if self._backlog <= self.max_backlog // 2:
            self._drained.set()
        if len(cache) > self.cache_size:
            self._evict_states()
        if len(self._dlive) > self._live_limit:
            self._drop_idle()

    def _drop(self, scopes: frozenset[int]) -> None:
        """Forget every entity of `scopes` (lost to another owner): its mail and
        timers stay stored, and its new owner recovers them."""
        scope_of = self.store.scope_of
        moved = self._moved_error(scopes)
        for key, live in list(self._dlive.items()):
            if scope_of(live.etype.name, live.id_text) in scopes:
                del self._dlive[key]
                self._forget(live, moved)
        for key in [k for k in self._cache if self._scope_of_key(k) in scopes]:
            del self._cache[key]
            self._seqs.pop(key, None)
        for timer_id, timer in list(self._armed.items()):
            if scope_of(timer.out.etype.name, timer.out.id_text) in scopes:
                del self._armed[timer_id]
                if timer.handle is not None:
                    timer.handle.cancel()
                if timer.out.tkey is not None:  # its new owner keeps it
                    self._dkeyed.fired(timer.out.address._key, timer.out.tkey, timer)
        self._fired = [
            t for t in self._fired if scope_of(t.out.etype.name, t.out.id_text) not in scopes
        ]
        self._to_load = [live for live in self._to_load if live.key in self._dlive]
        self._waiting = [live for live in self._waiting if live.key in self._dlive]
        self._recent_rows = [r for r in self._recent_rows if scope_of(r[0], r[1]) not in scopes]
        if self._backlog <= self.max_backlog // 2:
            self._drained.set()

    def _scope_of_key(self, key: Key) -> int:
        name, id = key
        return self.store.scope_of(name, self.codec.encode_id(name, id))

    def _forget(self, live: _Live, moved: PachytypeError) -> None:
        """Take an entity out of memory (its record may still sit in a ready
        queue: with no inbox it is skipped there)."""
        for mail_id, _, fut, _ in live.inbox:
            self._suspects.pop(mail_id, None)
            self._cleared.discard(mail_id)
            self._answer_ids.discard(mail_id)
            if fut is not None and not fut.done():
                fut.set_exception(moved)
        self._backlog -= len(live.inbox)
        live.inbox.clear()
        live.scheduled = live.urgent = False
        self._cache.pop(live.key, None)
        self._seqs.pop(live.key, None)

    def _moved_error(self, scopes: Iterable[int] | None) -> PachytypeError:
        which = "some of its scopes" if scopes is None else f"scope(s) {sorted(scopes)}"
        return PachytypeError(
            f"the {self.name} store lost {which} to another owner while this call waited: "
            f"its message is stored and is handled by the new owner, but its answer cannot "
            f"come back here; read the entity's state with `await eco.state(ref)`"
        )

    def _fenced(self, pending: _Pending) -> None:
        """A commit was refused (ownership lost under it): apply none of it, put
        its outside requests back in line, forget every entity, and let the
        store's next `news()` recover what it still owns."""
        requests = pending.requests
        kept: set[int] = set()
        for request in requests:
            if request.ack is not None:
                kept.add(id(request.ack))
            kept.update(id(o.fut) for o in request.outs if o.fut is not None)
        moved = self._moved_error(None)
        failing = [f for f in self._inbox_futures() if id(f) not in kept]
        failing.extend(f for f, _ in pending.results if id(f) not in kept)
        failing.extend(f for f, _ in pending.failures if id(f) not in kept)
        for request in reversed(requests):
            (self._calls if request.ack is None else self._incoming).appendleft(request)
        for timer in [*self._armed.values(), *self._fired]:
            if timer.handle is not None:
                timer.handle.cancel()
        self._armed.clear()
        self._fired = []
        for live, _, _, n in pending.turns:
            # What the refused batch ran is not in its past: it runs again.
            for _ in range(min(n, len(live.recent))):
                live.recent.pop()
        for live in self._dlive.values():
            # Records stay (with their recent messages); their mail comes back
            # from the store, entities of scopes lost go with the next news.
            live.inbox.clear()
            live.scheduled = live.urgent = live.busy = False
        self._dready.clear()
        self._urgent.clear()
        self._cache.clear()
        self._seqs.clear()
        self._suspects.clear()
        self._cleared.clear()
        self._waiting = []
        self._to_load = []
        self._answer_ids.clear()
        self._recent_rows = []
        self._startup = CommitBatch()
        self._backlog = 0
        self._pending = None
        self._drained.set()
        for fut in failing:
            if not fut.done():
                fut.set_exception(moved)
        self._news = True  # recover every scope still owned

    def _inbox_futures(self) -> Iterator[Future]:
        for live in self._dlive.values():
            for _, _, fut, _ in live.inbox:
                if fut is not None:
                    yield fut

    def _recent_row(self, live: _Live) -> EntityRow:
        """An entity row that changes only the recent messages (nothing else moves).

        They are encoded here, not kept encoded beside the decoded ones: this
        runs when an entity leaves memory or at a close, a turn runs far more
        often. Unreadable mail keeps its stored bytes."""
        live.recent_dirty = False
        name = live.etype.name
        encode = self.codec.encode_message
        stored: list[bytes] = []
        for message in live.recent:
            if type(message) is Unreadable:
                stored.append(message.payload)
                continue
            try:
                stored.append(encode(name, message))
            except Exception:  # pragma: no cover (it was encoded once: sent, or stored)
                continue  # only this context is lost, never the close
        return (name, live.id_text, None, 0, 0, tuple(stored))

    @property
    def failure(self) -> BaseException | None:
        """The error the store failed with (None while it works)."""
        return self._failure

    def held(self) -> dict[tuple[str, str], BaseException]:
        """Entities held because their state cannot be loaded: `(entity type,
        id text) -> the load error`; their mail waits, in order."""
        return {
            (name, self.codec.encode_id(name, id)): state.error
            for (name, id), state in self._cache.items()
            if type(state) is Held
        }

    def _evict_states(self) -> None:
        cache = self._cache
        excess = len(cache) - self.cache_size + self.cache_size // 10
        seqs = self._seqs
        for key in list(itertools.islice(cache, excess)):
            del cache[key]
            seqs.pop(key, None)

    def _drop_idle(self) -> None:
        """Passivate: forget live records with no mail (their states stay stored;
        their recent messages are written with the next commit)."""
        kept: dict[Key, _Live] = {}
        for key, live in self._dlive.items():
            if live.scheduled or live.inbox:
                kept[key] = live
            elif live.recent_dirty:
                self._recent_rows.append(self._recent_row(live))
        self._dlive = kept
        # With many entities holding mail, do not rescan at every commit.
        self._live_limit = max(_LIVE_KEPT, 2 * len(self._dlive))


def rebuild_journal(
    codec: Codec, etype: EntityType, id: Hashable, journal: Journal | None
) -> tuple[object, int]:
    """An event-sourced entity's state (UNBORN, or Held if it cannot be
    rebuilt) and event count, from its stored journal (`pachytype._core.journal`)."""
    if journal is None:
        return UNBORN, 0
    name = etype.name
    snapshot, events = journal.snapshot, journal.events
    seq = events[-1][0] if events else (0 if snapshot is None else snapshot[0])
    try:
        state = (
            UNBORN if snapshot is None else codec.decode_state(name, id, snapshot[1], snapshot[2])
        )
        decoded = [(n, codec.decode_event(name, id, data)) for n, data in events]
        return rebuild(etype, id, state, decoded), seq
    except Exception as error:
        return Held(error), seq


def _error_answer(mail_id: int, version: int, error: BaseException) -> AnswerRow:
    """A failed message's answer: the error's type and text as any store keeps them."""
    return (
        mail_id,
        None,
        version,
        storable_text(type(error).__qualname__),
        storable_text(str(error)),
        error,
    )


def _first(item: tuple[int, object]) -> int:
    return item[0]


def _position(item: StoredEvent[Any]) -> int:
    return item.position


def decode_dead(registry: Registry, codec: Codec, row: DeadRow) -> DeadLetter:
    """A stored dead letter as a `DeadLetter`; parts that do not decode stay bytes."""
    etype = registry.types.get(row.entity_type)
    id: Hashable = row.id_text
    message: object = row.message
    state: object = row.state
    recent: tuple[object, ...] = row.recent
    if etype is not None:
        with contextlib.suppress(Exception):
            id = codec.decode_id(etype.name, row.id_text)
        with contextlib.suppress(Exception):
            message = codec.decode_message(etype.name, row.message, id)
        with contextlib.suppress(Exception):
            recent = tuple(codec.decode_message(etype.name, m, id) for m in row.recent)
        if row.state is not None:
            with contextlib.suppress(Exception):
                state = codec.decode_state(etype.name, id, row.state, row.version)
        address: Address[Any] = address_of(etype, id)
    else:
        address = make_ref(Ref, row.entity_type, id)
    return DeadLetter(
        seq=row.id,
        to=address,
        message=message,
        error_type=row.error_type,
        error=row.error,
        traceback=row.traceback,
        state=state,
        recent=recent,
        at=datetime.fromtimestamp(row.at, UTC),
    )
