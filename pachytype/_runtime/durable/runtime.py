"""The durable dispatcher: the runtime core (`pachytype._runtime.dispatch`) with a
`Store` underneath, in group commits. LocalDisk runs it on SQLite, each
worker of a Postgres node on PostgreSQL (`pachytype._postgres.store`).

This module holds `DurableRuntime`'s state, its lifecycle and the dispatch
loop (`DurableRuntime._dispatch`), one pass of which is the pipeline

    news (`recovery.take_news`) -> suspects (`build.clear_suspects`)
    -> build (`build.build`: take requests, number mail, run turns with
       `turns.turn_durably`) -> load missing states (`recovery.load`)
    -> `Store.commit` -> apply (`apply.apply`), or `apply.fenced`

The sibling modules are plain functions over this runtime's records:
`records` (the data), `mail` (numbering, inboxes, timers), `entry` (outside
requests), `build`, `turns`, `apply` (and fencing), `recovery` (and state
loading) and `reads` (states, events, dead letters).

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
* **Beside a commit** (a store whose commits wait on a server,
  `Store.overlaps`: Postgres; `pipeline.py`). While a commit is under
  way the dispatcher takes the mail the store rings for and, when a full
  batch is ready (a drain), builds the next batch of entities not in the
  one committing; that batch is sent once the commit is done, so commits
  stay one at a time, in build order. A refused commit takes it along.
* **Calls first.** When `call`s wait, the next batch is a short one
  (`_CALL_BATCH` activations) that takes them and serves their entities
  before those with only fire-and-forget mail, so call latency stays low
  under a flood of sends. `send` applies backpressure: it waits while more
  than `max_backlog` messages sit in inboxes.
* **Ids.** Message ids come from one counter (resumed from the store), in
  build order; an entity consumes its mail in id order, so a store may keep
  one consumed cursor per entity (see `pachytype._store`).
* **Recent messages** of a dead letter (`recent`): kept per entity in
  memory, written at most `recent_every` seconds after they ran, when an
  idle entity leaves memory, at a clean close and at a handover.
* **Held entities** (state that cannot be loaded, `pachytype._core.held`;
  read again every `retry_held` seconds):
  never activated, their mail stays stored and unconsumed, `call` and
  `state` on them raise the load error.
* **Ownership and other writers** (the store's `news()`, see
  `pachytype._store`): between two commits (mail and recovery pages also
  beside one, while the store is `steady()`), the dispatcher takes what
  the store rang for: scopes lost (their entities leave memory: inboxes,
  cached states, armed timers; their mail stays stored for the new owner;
  their recent messages not written yet go to `Store.leave`, written
  while the scope is still ours), scopes gained
  (recovered as at `open`) and mail written by other processes (appended
  to inboxes). A commit refused as fenced (`FencedError`) is applied in no
  part: its outside requests go back in line, every entity leaves memory,
  and the store's next `news()` recovers every scope still owned. Mail
  whose sender in another process awaits an answer (`calls`) is answered
  in the commit that consumes it (`CommitBatch.answers`). LocalDisk's
  store owns one scope forever, so none of this happens there.
* **Recent messages** (a dead letter's context) are noted when a turn runs
  and written with passivation, `Store.leave` and a clean stop, which first
  lets the batch under way commit (at most `_STOP_WAIT` s): a message is
  noted once its batch commits, never twice. A batch that is refused or cut
  off takes its messages out again (`apply.unnote`, giving back what they
  pushed out of the bounded deque): they run again, here or at the next owner.
* **Memory.** Idle live records are dropped in bulk once more than
  `_LIVE_KEPT` exist; committed states are cached up to `cache_size`
  (least recently committed go first) and re-read from the store when
  needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from pachytype._address import Address, Envelope, Key
from pachytype._budget import DEFAULT_BUDGET
from pachytype._clock import Clock
from pachytype._core.envelopes import check_returned
from pachytype._core.held import RETRY_HELD
from pachytype._core.timers import CANCEL, KeyedTimers
from pachytype._deadletter import DeadLetter
from pachytype._errors import EcosystemClosedError, PachytypeError
from pachytype._events import Signal, StoredEvent
from pachytype._registry import EntityType, Registry
from pachytype._runtime.dispatch import Runtime
from pachytype._runtime.durable import entry, reads
from pachytype._runtime.durable.apply import fail_waiting, fenced
from pachytype._runtime.durable.pipeline import cycle, refused
from pachytype._runtime.durable.recent import RECENT_EVERY, disarm, recent_row, unnote
from pachytype._runtime.durable.records import (
    _GC_EVERY,
    _LIVE_KEPT,
    _STOP_WAIT,
    CACHE_SIZE,
    MAX_ATTEMPTS,
    MAX_BACKLOG,
    MAX_BATCH,
    Codec,
    Future,
    Out,
    _Live,
    _Pending,
    _Request,
    _Timer,
)
from pachytype._runtime.durable.recovery import recover
from pachytype._store import CommitBatch, EntityRow, FencedError, News, Store

log = logging.getLogger("pachytype.runtime")


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
        recent_every: float = RECENT_EVERY,
    ) -> None:
        super().__init__(registry, activation_budget=activation_budget, clock=clock)
        self.store = store
        self.codec = codec
        self.max_batch = max_batch
        self.cache_size = cache_size
        self.max_backlog = max_backlog
        self.name = name
        self.retry_held = retry_held
        self.recent_every = recent_every
        self._recent_due = time.monotonic() + recent_every  # see `recent.flush`
        self._recent_timer: asyncio.TimerHandle | None = None
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
        self._pending: _Pending | None = None  # the batch committing
        self._next: _Pending | None = None  # the batch built beside it, committed next
        self._later: News | None = None  # scopes lost, taken beside a commit, told after it
        self._stirred: asyncio.Future[None] | None = None  # woken while a commit is under way
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
        self._stopping = False  # `stop`: end after the batch under way
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
        recover(self, await self.store.open(self.registry.fingerprint, self._ring))
        self._owned = self.store.owned()
        self._remote = self.store.followed()
        self.start()

    def _ring(self) -> None:
        """The store's bell: `news()` has something (taken between two commits)."""
        self._news = True
        self._wake_up()

    async def stop(self) -> None:
        """Stop the dispatcher (after the batch it built: its commit's outcome
        says what its entities' recent messages hold), fail what waits, close
        the store."""
        await self._finish_batch()
        disarm(self)
        await super().stop()
        for cut in (self._pending, self._next):
            if cut is not None:
                # Cut off before its commit said whether it was written: its
                # messages may run again at the next owner, never noted twice.
                unnote(cut)
        for handle in self._held_retries:
            handle.cancel()
        self._held_retries.clear()
        closed = EcosystemClosedError(
            f"the ecosystem closed before this message was handled; if it was sent, it is "
            f"stored and will be delivered when the {self.name} database is opened again"
        )
        fail_waiting(self, closed)
        self.event_signal.close()
        await self._save_recent()
        self._dlive.clear()
        self._dready.clear()
        self._urgent.clear()
        await self.store.close()

    async def _finish_batch(self) -> None:
        """Let the dispatcher commit and apply the batch it built, then end
        (at most `_STOP_WAIT` s: a store that hangs is cut off)."""
        task = self._task
        if task is None or task.done():
            return
        self._stopping = True
        self._wake_up()
        await asyncio.wait({task}, timeout=_STOP_WAIT)  # never cancels it

    async def _save_recent(self) -> None:
        """At a clean close, write the recent messages not written yet."""
        if self._failure is not None:
            return
        rows = [recent_row(live) for live in self._dlive.values() if live.recent_dirty]
        rows.extend(self._recent_rows)
        if rows:
            with contextlib.suppress(Exception):  # losing context must not stop a close
                await self.store.commit(CommitBatch(entities=rows))

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

    @property
    def failure(self) -> BaseException | None:
        """The error the store failed with (None while it works)."""
        return self._failure

    # -- the dispatcher: news, build, load, commit, apply ----------------------

    async def _dispatch(self) -> None:
        try:
            while True:
                try:
                    if await cycle(self):
                        continue
                except FencedError:
                    # Ownership moved under us (or the outcome of a store call
                    # is unknown): apply nothing, reload what is still ours.
                    fenced(self, refused(self))
                    continue
                if self._stopping:
                    return
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
            fail_waiting(self, error)
            self._idle.set()
            if self.on_failure is not None:
                self.on_failure(error)

    def _wake_up(self) -> None:
        if not self._wake.is_set():
            self._wake.set()
            self._idle.clear()
        stirred = self._stirred
        if stirred is not None and not stirred.done():
            stirred.set_result(None)

    async def quiesce(self) -> None:
        """Wait until every ready message is handled and committed (raises once
        the store failed: the dispatcher is gone, nothing will settle)."""
        while not self._idle.is_set() or self._wake.is_set():
            self._check_open()
            await self._idle.wait()
            await asyncio.sleep(0)
        self._check_open()

    # -- used by every part: id texts, routing -----------------------------------

    def _id_text(self, etype: EntityType, address: Address[Any]) -> str:
        key = address._key
        text = self._id_texts.get(key)
        if text is None:
            if len(self._id_texts) > self.cache_size:
                self._id_texts.clear()
            text = self._id_texts[key] = self.codec.encode_id(etype.name, address._id)
        return text

    def _route_durably(self, sender: Address[Any], env: object) -> Out:
        """An envelope an activation returned, checked and encoded (`turns`)."""
        to, etype, message, delay, key = check_returned(self.registry, sender, env)
        payload = b"" if message is CANCEL else self.codec.encode_message(etype.name, message)
        id_text = self._id_text(etype, to)
        if self.gate is not None:  # raises: the activation fails, nothing is sent
            self.gate(etype.name, type(message), self.store.scope_of(etype.name, id_text))
        return Out(to, etype, id_text, message, payload, delay, None, key)

    # -- entry points (`entry`) and reads (`reads`) ------------------------------

    async def send_durably(self, envelopes: Iterable[Envelope[Any]]) -> None:
        """Send envelopes; return once they are committed."""
        await entry.send_durably(self, envelopes)

    def call(self, envelope: Envelope[Any]) -> Future:
        """Commit one envelope; the future gets the target's state after it."""
        return entry.call(self, envelope)

    async def redeliver(self, dead: DeadLetter) -> None:
        """Re-enqueue a dead letter's message; it leaves the dead letters in the
        same commit."""
        await entry.redeliver(self, dead)

    async def discard(self, dead: DeadLetter) -> None:
        """Delete a dead letter without delivering its message."""
        await entry.discard(self, dead)

    async def forget_state(self, ref: Address[Any]) -> None:
        """Delete an entity's stored state (an ask's inbox, once its ask is
        over: `pachytype._inbox`); return once that is committed."""
        await entry.forget_state(self, ref)

    async def read_state(self, ref: Address[Any]) -> Any:
        """The entity's committed state (its `init` state if none is stored)."""
        return await reads.read_state(self, ref)

    def follow(self, ref: Address[Any]) -> AsyncIterator[Any]:
        """The current state, then every committed state, until the ecosystem closes."""
        return reads.follow(self, ref)

    def entity_events(
        self, etype: EntityType, ref: Address[Any], after: int
    ) -> AsyncIterator[tuple[int, Any]]:
        """`(seq, event)` of one event-sourced entity after `after`, then live."""
        return reads.entity_events(self, etype, ref, after)

    def type_events(self, etype: EntityType, after: int) -> AsyncIterator[StoredEvent[Any]]:
        """Every event of every entity of an event-sourced type after log
        position `after`, then live."""
        return reads.type_events(self, etype, after)

    async def stored_dead_letters(self) -> list[DeadLetter]:
        """Every persisted dead letter, oldest first, decoded where possible."""
        return await reads.stored_dead_letters(self)

    def held(self) -> dict[tuple[str, str], BaseException]:
        """Entities held because their state cannot be loaded: `(entity type,
        id text) -> the load error`; their mail waits, in order."""
        return reads.held(self)
