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
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Coroutine, Hashable, Sequence
from typing import Any, Final, TypeVar

import asyncpg  # type: ignore[import-untyped]  # no stubs published

from pachytype._address import Envelope
from pachytype._address import unpack as unpack_envelope
from pachytype._clock import Clock
from pachytype._codec import Codec
from pachytype._core.envelopes import check_outside
from pachytype._core.timers import DROPPED, supersede, timer_dropped
from pachytype._errors import ActivationError, EcosystemClosedError, PachytypeError
from pachytype._postgres.deploy import Deployment
from pachytype._postgres.lease import channel
from pachytype._postgres.node import Node
from pachytype._postgres.partition import partition_of
from pachytype._postgres.reply import Answer, new_key, reply_channel, unpack
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


def new_message_id() -> uuid.UUID:
    """A message id that sorts by creation time (UUIDv7 layout)."""
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    return uuid.UUID(bytes=bytes(raw))


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
        self.calls: dict[uuid.UUID, asyncio.Future[Any]] = {}
        """Calls waiting for their answer, by message id."""
        self._call_targets: dict[uuid.UUID, tuple[str, Hashable, object]] = {}
        self._committed_at: dict[uuid.UUID, float] = {}  # calls waiting for an answer
        self._call_rows: dict[uuid.UUID, Row] = {}
        self.poll_now = asyncio.Event()
        """Set to read the answers of every waiting call from the table at once."""
        self._poller: asyncio.Task[None] | None = None
        self._queue: list[tuple[list[Row], asyncio.Future[None]]] = []
        self._flushers = 0
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
        for fut in [*self.calls.values(), *(f for _, f in self._queue)]:
            if not fut.done():
                fut.set_exception(closed)
        self.calls.clear()
        self._queue.clear()

    # -- sending ---------------------------------------------------------------------

    def encode(self, envelope: Envelope[Any], reply: bool = False) -> Row:
        """Check one envelope from outside and encode it as a mailbox row (a
        delayed one with its due time on this ecosystem's clock)."""
        to, etype, message, delay, key = check_outside(self.registry, envelope)
        id_text = self._c.encode_id(etype.name, to.id)
        partition = partition_of(etype.name, id_text, self.partitions)
        deployment = self.deployment
        if deployment is not None and not deployment.uniform:
            deployment.check_send(etype.name, type(message), partition, reply)
        return (
            new_message_id(),
            partition,
            etype.name,
            id_text,
            self._c.encode_message(etype.name, message),
            self.clock.now() + delay if delay > 0 else 0.0,
            reply,
            key,
        )

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
        if self._flushers < FLUSHERS:
            self._flushers += 1
            self._spawn(self._flush())
        return fut

    async def _flush(self) -> None:
        """Commit everything queued, one INSERT at a time, until the queue is empty."""
        try:
            while self._queue and self.pool is not None:
                batch, self._queue = self._queue, []
                try:
                    await self.insert([r for rows, _ in batch for r in rows])
                except BaseException as error:
                    failure: BaseException = error
                    if isinstance(error, asyncio.CancelledError):
                        failure = EcosystemClosedError(
                            "the ecosystem closed before this message was committed"
                        )
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(failure)
                    if isinstance(error, asyncio.CancelledError):
                        raise
                else:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_result(None)
        finally:
            self._flushers -= 1

    async def insert(self, rows: list[Row]) -> None:
        """One INSERT of `rows` (and the NOTIFY of their partitions' owners),
        sent again once if the connection failed (the same ids: a resend is
        dropped by the receiver)."""
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
                    self._answer_dropped(r[0])
            rows = kept
        columns = [list(c) for c in zip(*rows, strict=True)]
        for attempt in (1, 2):
            try:
                await pool.fetchval(
                    f"WITH m AS (INSERT INTO {self._s}.mailbox (msg_id, partition, entity_type, "
                    f"entity_id, payload, due, outside, reply, reply_to, reply_key, "
                    f"timer_key) "
                    f"SELECT u.i, u.p, u.t, u.e, u.b, "
                    f"CASE WHEN u.d > 0 THEN u.d END, true, u.r, "
                    f"CASE WHEN u.r THEN $8 END, CASE WHEN u.r THEN $9::bytea END, u.k "
                    f"FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::bytea[], "
                    f"$6::float8[], $7::bool[], $13::text[]) AS u(i, p, t, e, b, d, r, k)), "
                    f"{replaced_timers(self._s, '$3', '$4', '$13', '$14')} "
                    f"SELECT count(pg_notify($10, n)), "
                    f"CASE WHEN $12 THEN set_config('synchronous_commit', 'off', true) END "
                    f"FROM unnest($11::text[]) AS n",
                    *columns[:7],
                    self.reply_channel,
                    self._reply_key,
                    channel(self.schema, "mail"),
                    [",".join(map(str, remote))] if remote else [],
                    # Only calls: their acknowledgement is the answer, committed
                    # (flushed) by the owner after this commit's WAL, so this
                    # commit need not wait for its own flush. A send's
                    # acknowledgement is this commit: it waits.
                    all(r[6] for r in rows),
                    columns[7],
                    self.clock.now(),
                )
                break
            except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError):
                # The commit may or may not have happened: resend the same ids;
                # the receiver drops a message whose id it already consumed.
                if attempt == 2:
                    raise
        if self.node is not None:
            for r in rows:
                if r[5] <= 0:
                    self.node.wake(r[1])

    # -- calls and answers -------------------------------------------------------------

    async def call(self, envelope: Envelope[S]) -> S:
        """Send one envelope and wait for its answer."""
        self.open_pool()
        row = self.encode(envelope, reply=True)
        msg_id = row[0]
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.calls[msg_id] = fut
        to, message, _ = unpack_envelope(envelope)
        self._call_targets[msg_id] = (row[2], to.id, message)
        self._call_rows[msg_id] = row
        try:
            await self.submit([row])
            self._committed_at[msg_id] = asyncio.get_running_loop().time()
            if self._poller is None or self._poller.done():
                self._poller = self._spawn(self._poll_answers())
            result: S = await fut
            return result
        finally:
            self.calls.pop(msg_id, None)
            self._call_targets.pop(msg_id, None)
            self._call_rows.pop(msg_id, None)
            self._committed_at.pop(msg_id, None)

    def on_answers(self, _c: object, _pid: int, _channel: str, payload: str) -> None:
        """A notification on this instance's reply channel (a LISTEN callback)."""
        answers = unpack(self._reply_key, payload)
        if answers is None:
            # Anyone who can connect may NOTIFY any channel: never trust it,
            # and do not let a flood of them flood the log either.
            log.debug("%s: dropped a reply notification not sealed with our key", self._owner)
            return
        pointers = []
        for answer in answers:
            fut = self.calls.get(answer.msg_id)
            if fut is None or fut.done():
                continue
            if answer.pointer:
                pointers.append(answer.msg_id)
            else:
                self._resolve(fut, answer)
        if pointers:
            self._spawn(self._fetch_answers(pointers))

    def answered_here(self, msg_id: uuid.UUID, answer: AnswerRow) -> None:
        """An answer committed by this process's node to a call of this process."""
        fut = self.calls.get(msg_id)
        if fut is not None and not fut.done():
            _, data, version, error_type, error, raised = answer
            self._resolve(fut, Answer(msg_id, version, data, error_type, error), raised)

    async def _poll_answers(self) -> None:
        """While calls wait: every `poll_interval` (at once after the LISTEN
        connection came back), read the answers of calls committed more than
        `poll_interval` ago from the table (their notification may be lost)."""
        loop = asyncio.get_running_loop()
        while self._committed_at and self.pool is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.poll_now.wait(), self._poll)
            late = self.poll_now.is_set()
            self.poll_now.clear()
            now = loop.time()
            due = [m for m, at in self._committed_at.items() if late or now - at >= self._poll]
            if due:
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await self._fetch_answers(due)

    async def _fetch_answers(self, msg_ids: list[uuid.UUID]) -> None:
        """Read answers from the table; resend a call whose message is neither
        answered nor waiting (its commit was lost with the server: a call's
        INSERT does not wait for its flush, see `insert`)."""
        pool = self.pool
        if pool is None:
            return
        calls = {m: self._call_rows[m] for m in msg_ids if m in self._call_rows}
        rows = await pool.fetch(
            f"SELECT u.i, d.version, d.data, d.error_type, d.error, d.msg_id IS NOT NULL, "
            f"EXISTS (SELECT 1 FROM {self._s}.mailbox m WHERE m.partition = u.p "
            f"AND m.msg_id = u.i) "
            f"FROM unnest($1::uuid[], $2::int[]) AS u(i, p) "
            f"LEFT JOIN {self._s}.dedupe d ON d.msg_id = u.i",
            list(calls),
            [row[1] for row in calls.values()],
        )
        lost = []
        for r in rows:
            fut = self.calls.get(r[0])
            if fut is None or fut.done():
                continue
            if r[2] is not None or r[3] is not None:
                self._resolve(fut, Answer(r[0], r[1], r[2], r[3], r[4]))
            elif not r[5] and not r[6]:
                lost.append(calls[r[0]])
        if lost:
            log.warning(
                "%s: %d call(s) lost with the server; sending them again", self._owner, len(lost)
            )
            await self.submit(lost)

    def _resolve(
        self, fut: asyncio.Future[Any], answer: Answer, raised: BaseException | None = None
    ) -> None:
        """Resolve a call; `raised`: the error itself, when its node is in this process."""
        if answer.error_type == DROPPED:
            self._answer_dropped(answer.msg_id)
            return
        entity_type, id, message = self._call_targets[answer.msg_id]
        if answer.error_type is None:
            assert answer.data is not None and answer.version is not None
            try:
                fut.set_result(self._c.decode_state(entity_type, id, answer.data, answer.version))
            except PachytypeError as error:
                fut.set_exception(error)
            return
        cause = raised or _rebuild(answer.error_type, answer.error or "")
        failure = ActivationError(entity_type, id, message, cause)
        failure.__cause__ = cause
        fut.set_exception(failure)

    def _answer_dropped(self, msg_id: uuid.UUID) -> None:
        """Fail a call whose keyed timer was replaced or cancelled before it fell due."""
        fut, row = self.calls.get(msg_id), self._call_rows.get(msg_id)
        if fut is None or fut.done() or row is None:
            return
        entity_type, id, _ = self._call_targets[msg_id]
        to = address_of(self.registry.get(entity_type, id), id)
        fut.set_exception(timer_dropped(to, row[7] or "", None))


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
