"""The client path on PostgreSQL: what `Postgres.send` and `Postgres.call` do
in any instance (node or `node=False`): the group commit of outside mail, and
calls with their answers. `ClientPath` is owned by the ecosystem
(`pachytype.ecosystems._postgres`), which opens and closes it and routes the
reply channel's notifications to it.

Design note
-----------
* **Group commit.** `send` checks every envelope (entity type, message
  class, id), encodes them and queues the rows: concurrent `send`s and
  `call`s of one process share one multi-row INSERT (at most `FLUSHERS` in
  flight; the next one takes everything queued meanwhile), which NOTIFYs
  the owners of their partitions; they wake at once. Each outside message
  has an id (`new_message_id`); a resend after a lost commit
  acknowledgement is dropped by the receiver's dedupe record.
* **Calls.** A call is a send whose row names this instance's reply
  channel and key (`_postgres/reply.py`): the owner NOTIFYs the answer (the
  state itself, or the error) on that channel in the transaction that
  commits it, and keeps it with the dedupe id. An owner in this process
  resolves the caller's future directly (`answered_here`). A call not
  answered within `poll_interval` (its notification was lost with the
  LISTEN connection) reads its answer from the table, and is sent again if
  its message is neither answered nor waiting (a call's INSERT does not
  wait for its flush: its acknowledgement is the answer).
* **A newer schema** (migrated by a newer pachytype since this process
  opened it: found by a heartbeat, the node's or the client's) makes every
  operation raise `SchemaError` (`open_pool`): this library's SQL may no
  longer fit the tables.
* **Hot path.** `send`/`call` cost one coroutine each, the rows a tuple
  each; the pool, node and codec are plain attributes the ecosystem sets
  when it opens and closes (no lookup through the ecosystem per message).
  A waiting call is one record in one dict keyed by its id as an int; it
  awaits one future, its answer (its commit's failure, if any, is set on
  it too). Ids draw from a private generator, not a system call each.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Coroutine, Hashable, Sequence
from typing import Any, Final, TypeVar

import asyncpg  # type: ignore[import-untyped]  # no stubs published

from pachytype._address import Envelope
from pachytype._clock import Clock
from pachytype._codec import Codec
from pachytype._core.envelopes import check_outside
from pachytype._core.timers import DROPPED, supersede, timer_dropped
from pachytype._errors import ActivationError, EcosystemClosedError, PachytypeError
from pachytype._postgres.deploy import Deployment
from pachytype._postgres.lease import channel
from pachytype._postgres.node import Node
from pachytype._postgres.partition import partition_of
from pachytype._postgres.reply import new_key, opened, reply_channel
from pachytype._postgres.schema import SchemaError, quote_schema, replaced_timers
from pachytype._registry import Registry
from pachytype._runtime.dispatch import address_of
from pachytype._store import AnswerRow

S = TypeVar("S")

log = logging.getLogger("pachytype.postgres")

FLUSHERS: Final = 2
"""Group-commit INSERTs in flight at once per instance."""

Row = tuple[uuid.UUID, int, str, str, bytes, float, bool, str | None]
"""A row to insert: (msg id, partition, entity type, id text, payload, due on
the clock or 0 for now, reply?, timer key)."""


class RemoteError(Exception):
    """Stands for an exception raised on another node, when its class is not a
    builtin (only its class name and message travel)."""


_RANDOM = random.Random()
"""The random part of message ids: a private generator seeded from the OS
(`os.urandom` per id is a system call), reseeded in a forked child so that
parent and child never draw the same ids. Ids need to be unique (a receiver
drops a message whose id it already consumed), not unguessable."""


def _reseed() -> None:
    _RANDOM.seed(os.urandom(32))


_reseed()
os.register_at_fork(after_in_child=_reseed)

_V7: Final = (0x7 << 76) | (0x2 << 62)
"""The version (7) and variant (RFC 9562) bits of a UUIDv7."""
_LOW62: Final = (1 << 62) - 1


def new_message_id() -> uuid.UUID:
    """A message id that sorts by creation time (UUIDv7 layout: 48 bits of
    Unix milliseconds, then 74 random bits around the version and variant)."""
    r = _RANDOM.getrandbits(74)
    return uuid.UUID(int=(time.time_ns() // 1_000_000) << 80 | _V7 | (r >> 62) << 64 | (r & _LOW62))


class _Call:
    """A call waiting for its answer: its future, its row (sent again if its
    commit was lost) and its target (to build the answer or the error)."""

    __slots__ = ("at", "fut", "message", "row", "target")

    def __init__(self, fut: asyncio.Future[Any], row: Row, target: Hashable, message: object):
        self.fut = fut
        self.row = row
        self.target = target
        self.message = message
        self.at = 0.0
        """Loop time its row was committed (0 until then): polled from then on."""


class Calls:
    """The calls of an instance waiting for their answer, keyed by message id
    as an int (a `uuid.UUID` hashes in Python; an answer's id arrives as hex:
    no UUID is built for it). `msg_id in calls` takes a `uuid.UUID`."""

    __slots__ = ("by_id",)

    def __init__(self) -> None:
        self.by_id: dict[int, _Call] = {}

    def __contains__(self, msg_id: object) -> bool:
        return isinstance(msg_id, uuid.UUID) and msg_id.int in self.by_id

    def __len__(self) -> int:
        return len(self.by_id)


class ClientPath:
    """One `Postgres` instance's sends and calls: the group commit, the calls
    waiting for answers, and the answers (notified, polled, or resolved by
    this process's node)."""

    def __init__(
        self,
        registry: Registry,
        schema: str,
        clock: Clock,
        poll_interval: float,
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        owner: object,
    ) -> None:
        self.registry = registry
        self.schema = schema
        self.clock = clock
        self._poll = poll_interval
        self._spawn = spawn
        self._owner = owner  # named in log lines
        self._s = quote_schema(schema)
        # Set by the ecosystem as it opens and closes:
        self.pool: asyncpg.Pool | None = None
        self.node: Node | None = None
        self.codec: Codec | None = None
        self.deployment: Deployment | None = None
        self.partitions = 0
        self.refused: SchemaError | None = None
        """Set when a client's heartbeat found the schema migrated by a newer
        pachytype: every operation raises it (its SQL may no longer fit)."""
        self.calls = Calls()
        """Calls waiting for their answer (one record each: one dict entry)."""
        self._pending = self.calls.by_id
        self.poll_now = asyncio.Event()
        """Set to read the answers of every waiting call from the table at once."""
        self._poller: asyncio.Task[None] | None = None
        self._queue: list[tuple[list[Row], asyncio.Future[None] | _Call]] = []
        """Rows to commit, each with the future of its `submit` or its call
        (whose future is its answer: committing it only starts its polling)."""
        self._flushers = 0
        self._coming = False  # a flusher is on its way to take the queue
        self._idle: asyncio.Future[None] | None = None
        """Set while a flusher, holding a connection, waits for rows (`_flush`)."""
        self._insert_sql = (_insert_sql(self._s, timers=False), _insert_sql(self._s, timers=True))
        """The INSERT of `insert`: without keyed timers, and with them."""
        self.reply_channel = reply_channel(schema, uuid.uuid4().hex)
        self._reply_key = new_key()

    @property
    def _c(self) -> Codec:
        assert self.codec is not None
        return self.codec

    def open_pool(self) -> asyncpg.Pool:
        """The pool, or `EcosystemClosedError` if the ecosystem is not open
        (`SchemaError` if a newer pachytype migrated the schema since)."""
        pool = self.pool
        if pool is None:
            raise EcosystemClosedError(
                f"the ecosystem is not open: use `async with Postgres(dsn, REGISTRY, "
                f"schema={self.schema!r}) as eco:`"
            )
        node = self.node
        moved = node.failure if node is not None else self.refused
        if isinstance(moved, SchemaError):
            raise SchemaError(f"{moved}; this process no longer uses it")
        return pool

    def close(self) -> None:
        """Fail every call and send still waiting (the ecosystem closed)."""
        closed = EcosystemClosedError("the ecosystem closed before this message was handled")
        waiting = [*self._pending.values(), *(w for _, w in self._queue)]
        for fut in (w.fut if isinstance(w, _Call) else w for w in waiting):
            if not fut.done():
                fut.set_exception(closed)
        self._pending.clear()
        self._queue.clear()
        self._coming, self._idle = False, None

    # -- sending ---------------------------------------------------------------------

    def encode(self, envelope: Envelope[Any], reply: bool = False) -> Row:
        """Check one envelope from outside and encode it as a mailbox row (a
        delayed one with its due time on this ecosystem's clock)."""
        return self._encode(envelope, reply)[0]

    def _encode(self, envelope: Envelope[Any], reply: bool) -> tuple[Row, Hashable, object]:
        """`encode`, with the target's id and the message (a call keeps them)."""
        to, etype, message, delay, key = check_outside(self.registry, envelope)
        c = self._c
        name = etype.name
        id = to.id
        id_text = c.encode_id(name, id)
        partition = partition_of(name, id_text, self.partitions)
        deployment = self.deployment
        if deployment is not None and not deployment.uniform:
            deployment.check_send(name, type(message), partition, reply)
        row = (
            new_message_id(),
            partition,
            name,
            id_text,
            c.encode_message(name, message),
            self.clock.now() + delay if delay > 0 else 0.0,
            reply,
            key,
        )
        return row, id, message

    async def send(self, envelopes: Sequence[Envelope[Any]]) -> None:
        """Check and encode every envelope, then commit them together."""
        self.open_pool()
        rows = [self.encode(e) for e in envelopes]
        if rows:
            await self.submit(rows)

    def submit(self, rows: list[Row]) -> asyncio.Future[None]:
        """Queue rows for the group commit; the future is done once they are."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((rows, fut))
        self._kick()
        return fut

    def _queue_call(self, call: _Call) -> None:
        """Queue a call's row for the group commit (`submit` without a future:
        the call waits for its answer, or the commit's failure, on its own)."""
        self._queue.append(([call.row], call))
        self._kick()

    def _kick(self) -> None:
        """See that a flusher takes the queue: one already on its way to it,
        the idle one (woken), or a new one (at most `FLUSHERS`)."""
        if self._coming:
            return
        idle, self._idle = self._idle, None
        if idle is not None and not idle.done():  # (done: cancelled, its flusher is ending)
            self._coming = True
            idle.set_result(None)
        elif self._flushers < FLUSHERS:
            self._flushers += 1
            self._coming = True
            self._spawn(self._flush())

    async def _flush(self) -> None:
        """Commit everything queued, one INSERT at a time, until the queue is
        empty; then, while calls wait for their answers (their callers are
        about to call again), stay idle with the pool connection it holds
        (one flusher at most): the next batch needs no new task and no pool
        round (acquire, release: ~4 us a call of a batch of 32)."""
        pool = self.pool
        conn: asyncpg.Connection | None = None
        try:
            while True:
                while self._queue and self.pool is not None:
                    batch, self._queue = self._queue, []
                    self._coming = False
                    try:
                        if conn is None:
                            pool = self.open_pool()
                            conn = await pool.acquire()
                        await self.insert([r for rows, _ in batch for r in rows], conn)
                    except BaseException as error:
                        failure: BaseException = error
                        if isinstance(error, asyncio.CancelledError):
                            failure = EcosystemClosedError(
                                "the ecosystem closed before this message was committed"
                            )
                        for _, waiter in batch:
                            fut = waiter.fut if isinstance(waiter, _Call) else waiter
                            if not fut.done():
                                fut.set_exception(failure)
                        if isinstance(error, asyncio.CancelledError):
                            raise
                    else:
                        now = 0.0
                        for _, waiter in batch:
                            if isinstance(waiter, _Call):
                                # Committed: from now on its answer is polled too.
                                waiter.at = now = now or asyncio.get_running_loop().time()
                            elif not waiter.done():
                                waiter.set_result(None)
                        if now and (self._poller is None or self._poller.done()):
                            self._poller = self._spawn(self._poll_answers())
                    if conn is not None and conn.is_closed():
                        # (lost: the pool connects again for the next batch)
                        await _release(pool, conn)
                        conn = None
                if (
                    conn is None
                    or self._idle is not None
                    or not self._pending
                    or self.pool is not pool
                ):
                    return
                self._idle = idle = asyncio.get_running_loop().create_future()
                try:
                    await idle  # woken (and unset) by `_kick`, or when no call waits
                finally:
                    if self._idle is idle:  # (cancelled: the ecosystem closed)
                        self._idle = None
        finally:
            self._flushers -= 1
            if conn is not None and pool is not None:
                await _release(pool, conn)

    async def insert(self, rows: list[Row], conn: asyncpg.Connection | None = None) -> None:
        """One INSERT of `rows` (and the NOTIFY of their partitions' owners),
        on `conn` (held by the caller) or a connection of the pool, sent again
        once on a connection of the pool if the connection failed (the same
        ids: a resend is dropped by the receiver)."""
        pool = self.open_pool()
        owned = self.node.ownership.epochs if self.node is not None else {}
        remote = sorted({r[1] for r in rows if r[1] not in owned})
        if any(r[7] is not None for r in rows):
            kept: list[Row] = []
            for r in rows:  # keyed timers of this commit, in order (`pachytype._core.timers`)
                if r[7] is not None:
                    supersede(kept, r, _timer_of, _delayed)
                kept.append(r)
            for r in set(rows).difference(kept):
                if r[6]:  # a call whose timer never gets stored: it has no state to return
                    self._answer_dropped(self._pending.get(r[0].int))
            rows = kept
        columns = [list(c) for c in zip(*rows, strict=True)]
        # Every array costs the client per element to encode: the due times,
        # reply flags and timer keys go as empty arrays when they are all 0,
        # all equal ($12) or all None (unnest pads a shorter array with nulls).
        replies = all(columns[6])
        if replies or not any(columns[6]):
            columns[6] = []
        if not any(d > 0 for d in columns[5]):
            columns[5] = []
        if all(k is None for k in columns[7]):
            columns[7] = []
        args = [
            *columns[:7],
            self.reply_channel,
            self._reply_key,
            channel(self.schema, "mail"),
            [",".join(map(str, remote))] if remote else [],
            # Only calls: their acknowledgement is the answer, committed
            # (flushed) by the owner after this commit's WAL, so this commit
            # need not wait for its own flush. A send's acknowledgement is
            # this commit: it waits.
            replies,
        ]
        timers = bool(columns[7])
        if timers:
            args += [columns[7], self.clock.now()]
        query = self._insert_sql[timers]
        on = pool if conn is None else conn
        for attempt in (1, 2):
            try:
                await on.fetchval(query, *args)
                break
            except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError):
                # The commit may or may not have happened: resend the same ids;
                # the receiver drops a message whose id it already consumed.
                if attempt == 2:
                    raise
                if conn is not None:
                    conn.terminate()  # (broken: its holder gives it back)
                    on = pool
        if self.node is not None:
            for r in rows:
                if r[5] <= 0:
                    self.node.wake(r[1])

    # -- calls and answers -------------------------------------------------------------

    async def call(self, envelope: Envelope[S]) -> S:
        """Send one envelope and wait for its answer."""
        self.open_pool()
        row, target, message = self._encode(envelope, True)
        call = _Call(asyncio.get_running_loop().create_future(), row, target, message)
        key = row[0].int
        self._pending[key] = call
        try:
            self._queue_call(call)
            result: S = await call.fut
            return result
        finally:
            pending = self._pending
            pending.pop(key, None)  # (gone if the ecosystem closed)
            idle = self._idle
            if idle is not None and not pending:  # no call waits: the idle flusher lets go
                self._idle = None
                if not idle.done():
                    idle.set_result(None)

    def on_answers(self, _c: object, _pid: int, _channel: str, payload: str) -> None:
        """A notification on this instance's reply channel (a LISTEN callback)."""
        entries = opened(self._reply_key, payload)
        if entries is None:
            # Anyone who can connect may NOTIFY any channel: never trust it,
            # and do not let a flood of them flood the log either.
            log.debug("%s: dropped a reply notification not sealed with our key", self._owner)
            return
        pending = self._pending
        pointers = []
        for msg_id, version, data, error_type, error in entries:
            call = pending.get(msg_id)
            if call is None or call.fut.done():
                continue
            if data is None and error_type is None:
                pointers.append(call)  # too big for a notification: read it from the table
            else:
                self._resolve(call, version, data, error_type, error)
        if pointers:
            self._spawn(self._fetch_answers(pointers))

    def answered_here(self, msg_id: uuid.UUID, answer: AnswerRow) -> None:
        """An answer committed by this process's node to a call of this process."""
        call = self._pending.get(msg_id.int)
        if call is not None and not call.fut.done():
            _, data, version, error_type, error, raised = answer
            self._resolve(call, version, data, error_type, error, raised)

    async def _poll_answers(self) -> None:
        """While calls wait: every `poll_interval` (at once after the LISTEN
        connection came back), read the answers of calls committed more than
        `poll_interval` ago from the table (their notification may be lost)."""
        loop = asyncio.get_running_loop()
        while self._pending and self.pool is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.poll_now.wait(), self._poll)
            late = self.poll_now.is_set()
            self.poll_now.clear()
            now = loop.time()
            due = [c for c in self._pending.values() if c.at and (late or now - c.at >= self._poll)]
            if due:
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await self._fetch_answers(due)

    async def _fetch_answers(self, calls: list[_Call]) -> None:
        """Read answers from the table; resend a call whose message is neither
        answered nor waiting (its commit was lost with the server: a call's
        INSERT does not wait for its flush, see `insert`)."""
        pool = self.pool
        if pool is None:
            return
        rows = await pool.fetch(
            f"SELECT u.i, d.version, d.data, d.error_type, d.error, d.msg_id IS NOT NULL, "
            f"EXISTS (SELECT 1 FROM {self._s}.mailbox m WHERE m.partition = u.p "
            f"AND m.msg_id = u.i) "
            f"FROM unnest($1::uuid[], $2::int[]) AS u(i, p) "
            f"LEFT JOIN {self._s}.dedupe d ON d.msg_id = u.i",
            [c.row[0] for c in calls],
            [c.row[1] for c in calls],
        )
        lost = []
        for r in rows:
            call = self._pending.get(r[0].int)
            if call is None or call.fut.done():
                continue
            if r[2] is not None or r[3] is not None:
                self._resolve(call, r[1], r[2], r[3], r[4])
            elif not r[5] and not r[6]:
                lost.append(call.row)
        if lost:
            log.warning(
                "%s: %d call(s) lost with the server; sending them again", self._owner, len(lost)
            )
            await self.submit(lost)

    def _resolve(
        self,
        call: _Call,
        version: int | None,
        data: bytes | None,
        error_type: str | None,
        error: str | None,
        raised: BaseException | None = None,
    ) -> None:
        """Resolve a call with its answer: a state (`version`, `data`) or an
        error; `raised`: the error itself, when its node is in this process."""
        if error_type == DROPPED:
            self._answer_dropped(call)
            return
        fut, entity_type = call.fut, call.row[2]
        if error_type is None:
            assert data is not None and version is not None
            try:
                fut.set_result(self._c.decode_state(entity_type, call.target, data, version))
            except PachytypeError as undecodable:
                fut.set_exception(undecodable)
            return
        cause = raised or _rebuild(error_type, error or "")
        failure = ActivationError(entity_type, call.target, call.message, cause)
        failure.__cause__ = cause
        fut.set_exception(failure)

    def _answer_dropped(self, call: _Call | None) -> None:
        """Fail a call whose keyed timer was replaced or cancelled before it fell due."""
        if call is None or call.fut.done():
            return
        entity_type, id = call.row[2], call.target
        to = address_of(self.registry.get(entity_type, id), id)
        call.fut.set_exception(timer_dropped(to, call.row[7] or "", None))


def _insert_sql(s: str, timers: bool) -> str:
    """The group commit's INSERT of mailbox rows (and the NOTIFY of their
    partitions' owners). Its parameters: $1-$7 the rows' columns (msg id,
    partition, entity type, id text, payload, due, reply: the last two may be
    empty, read as nulls), $8-$9 the reply channel and key, $10-$11 the mail
    channel and the partitions to notify there, $12 whether every row is a
    call (or, with an empty $7, a send). With `timers`: $13 the rows' timer
    keys, $14 the clock, and the keyed timers they replace are deleted (a
    statement without them does not run that delete: its generic plan scans
    the whole mailbox even for no key)."""
    keyed = (
        ", $13::text[]) AS u(i, p, t, e, b, d, r, k)), "
        if timers
        else ") AS u(i, p, t, e, b, d, r)) "
    )
    return (
        f"WITH m AS (INSERT INTO {s}.mailbox (msg_id, partition, entity_type, "
        f"entity_id, payload, due, outside, reply, reply_to, reply_key"
        f"{', timer_key' if timers else ''}) "
        f"SELECT u.i, u.p, u.t, u.e, u.b, "
        f"CASE WHEN u.d > 0 THEN u.d END, true, coalesce(u.r, $12), "
        f"CASE WHEN coalesce(u.r, $12) THEN $8 END, "
        f"CASE WHEN coalesce(u.r, $12) THEN $9::bytea END{', u.k' if timers else ''} "
        f"FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::bytea[], "
        f"$6::float8[], $7::bool[]{keyed}"
        f"{replaced_timers(s, '$3', '$4', '$13', '$14') + ' ' if timers else ''}"
        f"SELECT count(pg_notify($10, n)), "
        f"CASE WHEN $12 THEN set_config('synchronous_commit', 'off', true) END "
        f"FROM unnest($11::text[]) AS n"
    )


async def _release(pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
    """Give a held connection back to its pool (closed or not)."""
    with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        await pool.release(conn)


def _rebuild(error_type: str, text: str) -> BaseException:
    """The exception raised on another node, as close as it can travel."""
    cls = getattr(builtins, error_type, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(text)
        except TypeError:
            pass
    return RemoteError(f"{error_type}: {text}")


def _timer_of(row: Row) -> tuple[tuple[str, str], str | None]:
    return (row[2], row[3]), row[7]


def _delayed(row: Row) -> bool:
    return row[5] > 0
