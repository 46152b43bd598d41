"""Postgres: immortal entities on many machines, sharing one PostgreSQL.

Design note
-----------
Every `Postgres(dsn, registry, schema=...)` opened with `node=True` (the
default) is a *node*: it takes a fair share of the schema's partitions and
activates their entities (`_postgres/node.py`, `_postgres/lease.py`, `_postgres/store.py`). Any
instance, node or not (`node=False` is a pure client), accepts `send`,
`call`, `state`, `follow` and `dead_letters` for any entity:

* `send` checks every envelope (entity type, message class, id), encodes
  them and hands the rows to this instance's *group commit*: concurrent
  `send`s and `call`s of one process share one multi-row INSERT (at most
  `_FLUSHERS` in flight; the next one takes everything queued meanwhile),
  which NOTIFYs the owners of their partitions; they wake at once. Each
  outside message has an id; a resend after a lost commit acknowledgement
  is dropped by the receiver's dedupe record.
* `call` is a `send` whose row names this instance's reply channel and key
  (`_postgres/reply.py`): the owner NOTIFYs the answer (the state itself, or the
  error) on that channel in the transaction that commits it, and keeps it
  with the dedupe id. An owner in this process resolves the caller's future
  directly. A call not answered within `poll_interval` (its notification
  was lost with the LISTEN connection) reads its answer from the table.
* `follow` registers a watch while holding the entity's partition lease row
  `FOR UPDATE` and writes that row (an owner's commit locks it `FOR KEY
  SHARE` and is sent again if the row changed under its snapshot, see
  `_postgres/store.py`), then reads the state: every commit of that entity after
  the read sees the watch, and writes each committed state to `history`.
  Notifications are only hints: the follower reads `history` after its
  position, so it never skips a state (a big one, or one committed while
  its LISTEN connection was down) and a forged notification yields nothing.
* `state` reads the committed row (or `init(id)`), never activating.

Rolling deploys (`_postgres/deploy.py`): nodes and clients of two versions of a
registry run side by side when the newer reads the older's states (same
shape, compatible changes, or an `@upgrade` chain) and their message
classes decode one way or the other; otherwise the newcomer is refused
(`FingerprintMismatchError`) and the old nodes must be stopped first
(SIGTERM hands their partitions over; mail stays in the mailbox). A
partition goes only to nodes that read every state stored in it, and a
`send`/`call` of a message some live node that may own the target cannot
decode raises `VersionSkewError` (deploy the nodes first). Stored states
of older `state_version`s are upgraded on load by the `@upgrade` chain and
written back in the new version at their next activation. Mail written by the old version is
decoded by the new one; a stored message that no longer decodes (its class
was removed or changed incompatibly, its entity type is gone, the row is
corrupt) becomes a dead letter holding its raw bytes and the error
(`DecodeError`; `UnknownEntityError` for a type that is gone), written in
the transaction that consumes it, and the entity carries on with its next
message; the error is logged, nothing is silently lost. Only state
that cannot be loaded (`StateVersionError`, or a `DecodeError` on the
state) holds its entity (`pachytype._versioning`): its mail waits in the
mailbox, unconsumed and in order, the error is logged and listed by
`blocked()`, and the entity is tried again every 30 s, so a repaired state
row or a deploy that loads it releases it.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Hashable
from datetime import timedelta
from typing import Any, Final, TypeVar, cast

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import attrs
import orjson

from pachytype._address import Envelope, Ref, make_envelope
from pachytype._address import unpack as unpack_envelope
from pachytype._budget import DEFAULT_BUDGET, watch_activations
from pachytype._clock import Clock, SystemClock
from pachytype._codec import Codec
from pachytype._compat import describe_registry
from pachytype._core.envelopes import check_outside
from pachytype._core.held import RETRY_HELD, Held
from pachytype._core.timers import DROPPED, supersede, timer_dropped
from pachytype._core.turn import UNBORN
from pachytype._deadletter import DeadLetter
from pachytype._ecosystem import Ecosystem, event_type
from pachytype._errors import ActivationError, EcosystemClosedError, InitError, PachytypeError
from pachytype._event_sourced import EventSourced
from pachytype._events import READ_BATCH, Signal, StoredEvent, tail
from pachytype._inbox import INBOX
from pachytype._postgres.deploy import Deployment
from pachytype._postgres.dsn import connect_error, redact
from pachytype._postgres.lease import Membership, Ownership, channel, new_node_id
from pachytype._postgres.node import Node
from pachytype._postgres.partition import partition_of
from pachytype._postgres.reply import Answer, new_key, reply_channel, unpack
from pachytype._postgres.schema import (
    SchemaError,
    migrate,
    quote_schema,
    replaced_timers,
    stored_partitions,
)
from pachytype._postgres.store import new_message_id, read_events, read_journals
from pachytype._registry import Registry
from pachytype._runtime.dispatch import address_of
from pachytype._runtime.durable import decode_dead, rebuild_journal
from pachytype._store import AnswerRow, DeadRow

S = TypeVar("S")
E = TypeVar("E")
Key = tuple[str, str]
"""`(entity type, id text)`."""

log = logging.getLogger("pachytype.postgres")

DEFAULT_PARTITIONS: Final = 64
_CLOSED: Final = object()
_HINT: Final = object()
"""Put in follower queues when the entity may have new states (a hint, or
the LISTEN connection was restored): read `history` again."""

_FLUSHERS: Final = 2
"""Group-commit INSERTs in flight at once per instance."""

_HISTORY_PAGE: Final = 100
"""States a follower reads from `history` per query."""

# A row to insert: (msg id, partition, entity type, id text, payload, due on the
# clock or 0 for now, reply?, timer key)
_Row = tuple[uuid.UUID, int, str, str, bytes, float, bool, str | None]


class RemoteError(Exception):
    """Stands for an exception raised on another node, when its class is not a
    builtin (only its class name and message travel)."""


class Postgres(Ecosystem):
    """Run the registry's entities on PostgreSQL, on as many machines as you like.

    >>> async with Postgres("postgresql://app@db/prod", REGISTRY, schema="bank") as eco:
    ...     await eco.call(refs.account("alice").deposit(amount=5))  # doctest: +SKIP

    * `schema`: where the library keeps its tables (created and migrated on
      open); ecosystems in different schemas never see each other.
    * `node`: take a share of the partitions and activate entities (default);
      `node=False` is a client that only sends, calls, reads and follows.
    * `partitions`: fixed when the schema is created (default 64); omit it
      afterwards.
    * `lease`: how long a silent node keeps its partitions; a dead node's
      entities resume elsewhere within about `lease` (+ a heartbeat).
    * `workers`, `batch`: activation loops per node and messages per
      transaction; `poll_interval`: how often idle loops look for mail
      without being notified.
    * `node_id`: this node's name in the leases (default host-pid-random).
    * `clock`: where time is read and delayed messages wait (a `ManualClock`
      in tests); due times are stored on it, so every process of a schema
      should use the same kind of clock.
    * `retry_held`: seconds between two attempts to load a state that could
      not be loaded (its entity is held meanwhile, its mail kept in order).
    """

    def __init__(
        self,
        dsn: str,
        registry: Registry,
        *,
        schema: str = "pachytype",
        node: bool = True,
        partitions: int | None = None,
        lease: timedelta = timedelta(seconds=5),
        workers: int = 2,
        batch: int = 2000,
        poll_interval: float = 0.5,
        node_id: str | None = None,
        clock: Clock | None = None,
        retry_held: float = RETRY_HELD,
    ) -> None:
        quote_schema(schema)  # refuse a bad name now, not at open
        if workers < 1 or batch < 1 or lease <= timedelta(0) or poll_interval <= 0:
            raise ValueError(
                f"Postgres(schema={schema!r}): workers ({workers}) and batch ({batch}) must be "
                f">= 1, lease ({lease}) and poll_interval ({poll_interval}) positive"
            )
        self.registry = registry
        self.schema = schema
        self.is_node = node
        self.node_id = node_id or new_node_id()
        self._dsn = dsn
        self._requested_partitions = partitions
        self._lease = lease.total_seconds()
        self._workers = workers
        self._batch = batch
        self._poll = poll_interval
        self.clock: Clock = clock or SystemClock()
        self.retry_held = retry_held
        self._events = Signal()
        self._s = quote_schema(schema)
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._node: Node | None = None
        self._codec: Codec | None = None
        self.partitions = partitions or DEFAULT_PARTITIONS
        self._calls: dict[uuid.UUID, asyncio.Future[Any]] = {}
        self._call_targets: dict[uuid.UUID, tuple[str, Hashable, object]] = {}
        self._committed_at: dict[uuid.UUID, float] = {}  # calls waiting for an answer
        self._call_rows: dict[uuid.UUID, _Row] = {}
        self._poll_now = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._queue: list[tuple[list[_Row], asyncio.Future[None]]] = []
        self._flushers = 0
        self._reply_channel = reply_channel(schema, uuid.uuid4().hex)
        self._reply_key = new_key()
        self._followers: dict[Key, list[asyncio.Queue[object]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._deployment: Deployment | None = None
        self._membership: Membership | None = None
        self._members_changed = asyncio.Event()

    def __repr__(self) -> str:
        return f"<Postgres {redact(self._dsn)} schema={self.schema!r} node={self.node_id!r}>"

    # -- lifecycle -------------------------------------------------------------

    async def _open(self) -> None:
        if self._pool is not None:
            raise RuntimeError(f"this Postgres ecosystem ({self.schema!r}) is already open")
        _ = self.registry.types
        self._codec = Codec(self.registry)
        self._deployment = Deployment(self.schema, describe_registry(self.registry), self._lease)
        if self.is_node:
            watch_activations()  # a looping activate is cut at its budget, before the lease
        settings = {
            "idle_in_transaction_session_timeout": str(max(int(self._lease * 500), 100)),
            "application_name": f"pachytype {self.schema} {self.node_id}"[:63],
        }
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._workers + 4,
                server_settings=settings,
                reset=_keep_session,
            )
        except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            # asyncpg quotes pieces of a malformed DSN (the password too): never chain it.
            raise ConnectionError(connect_error(self._dsn, error)) from None
        self._pool = pool
        try:
            await self._prepare(pool)
        except BaseException:
            self._pool = None
            await pool.close()
            raise

    async def _prepare(self, pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            await migrate(conn, self.schema, self.partitions)
            stored = await stored_partitions(conn, self.schema)
            if self._requested_partitions not in (None, stored):
                raise SchemaError(
                    f"schema {self.schema!r} was created with {stored} partitions, not "
                    f"{self._requested_partitions}; the count is fixed: omit `partitions`"
                )
            self.partitions = stored
            assert self._deployment is not None
            membership = Membership(
                self.schema,
                self.node_id,
                self.registry.fingerprint,
                stored,
                self._lease,
                Ownership(),
                self._deployment,
                kind="node" if self.is_node else "client",
            )
            self._membership = membership
            if not self.is_node:
                await membership.join(conn)
                await membership.client_beat(conn)
                self._spawn(self._client_heartbeat())
        assert self._codec is not None
        await self._listen()
        if self.is_node:
            node = Node(
                pool,
                self.registry,
                self._codec,
                membership,
                workers=self._workers,
                batch=self._batch,
                poll_interval=self._poll,
                is_local=self._calls.__contains__,
                resolve=self._answered_here,
                clock=self.clock,
                # A runaway activation is cut well before its lease could expire.
                activation_budget=min(DEFAULT_BUDGET, self._lease / 4),
                retry_held=self.retry_held,
            )
            await node.start()
            self._node = node

    async def _listen(self) -> None:
        conn = await asyncpg.connect(
            self._dsn,
            server_settings={
                "application_name": f"pachytype {self.schema} listen {self.node_id}"[:63]
            },
        )
        self._listener = conn
        conn.add_termination_listener(self._on_listener_lost)
        await conn.add_listener(channel(self.schema, "mail"), self._on_mail)
        await conn.add_listener(channel(self.schema, "members"), self._on_members)
        await conn.add_listener(self._reply_channel, self._on_answers)
        await conn.add_listener(channel(self.schema, "state"), self._on_state)
        await conn.add_listener(channel(self.schema, "events"), self._on_events)

    def _on_listener_lost(self, _conn: object) -> None:
        if self._pool is not None:
            log.warning("%s: LISTEN connection lost; reconnecting (polling meanwhile)", self)
            self._spawn(self._relisten())

    async def _relisten(self) -> None:
        delay = 0.05
        while self._pool is not None:
            try:
                await self._listen()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            for queues in self._followers.values():
                for q in queues:
                    q.put_nowait(_HINT)
            self._poll_now.set()  # answers may have been notified meanwhile
            self._events.notify()  # events may have been committed meanwhile
            if self._node is not None:
                self._node.members_changed()
                self._node.wake_all()
            return

    async def _client_heartbeat(self) -> None:
        """A client's membership: its row kept alive (so nodes of another
        version see what it runs) and its view of what the nodes run fresh,
        every lease / 4 and at once when a member joins or leaves."""
        assert self._membership is not None
        while self._pool is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._members_changed.wait(), self._lease / 4)
            self._members_changed.clear()
            pool = self._pool
            if pool is None:
                return
            try:
                async with pool.acquire() as conn:
                    await self._membership.client_beat(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("%s: client heartbeat failed: %s", self, error)

    async def _close(self) -> None:
        pool = self._pool
        if pool is not None and not self.is_node and self._membership is not None:
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                async with pool.acquire() as conn:
                    await self._membership.leave(conn)
        pool, self._pool = self._pool, None
        if pool is None:
            return
        node, self._node = self._node, None
        if node is not None:
            await node.stop()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await listener.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await pool.close()
        closed = EcosystemClosedError("the ecosystem closed before this message was handled")
        for fut in [*self._calls.values(), *(f for _, f in self._queue)]:
            if not fut.done():
                fut.set_exception(closed)
        self._calls.clear()
        self._queue.clear()
        for queues in self._followers.values():
            for q in queues:
                q.put_nowait(_CLOSED)
        self._followers.clear()
        self._events.close()

    @property
    def node(self) -> Node | None:
        """This instance's node (None for a client, or when closed)."""
        return self._node

    def blocked(self) -> dict[tuple[str, str], PachytypeError]:
        """Entities this node holds because their stored state cannot be loaded
        (`StateVersionError`, or `DecodeError` on the state), `(entity type, id
        text) -> error`; their mail waits in the mailbox, in order, and they are
        tried again every 30 s. (A stored *message* that does not decode is not
        listed here: it becomes a dead letter and its entity carries on.)"""
        if self._node is None:
            return {}
        return {key: _as_error(error) for key, error in self._node.blocked().items()}

    def _hosts_workers(self) -> bool:
        return self.is_node

    async def _late_hint(self) -> str:
        pool = self._pool
        if pool is None:
            return f" (Postgres schema {self.schema!r}: the ecosystem is closed)"
        live = await pool.fetchval(
            f"SELECT count(*) FROM {self._s}.nodes "
            f"WHERE heartbeat_at > now() - $1 * interval '1 second' AND kind = 'node'",
            self._lease,
        )
        if not live:
            return (
                f"; Postgres schema {self.schema!r} has no live node: nothing activates its "
                f"entities until one runs (`pachytype node` or Postgres(..., node=True))"
            )
        return f" (Postgres schema {self.schema!r}, {live} live node(s))"

    def _open_pool(self) -> asyncpg.Pool:
        pool = self._pool
        if pool is None:
            raise EcosystemClosedError(
                f"the ecosystem is not open: use `async with Postgres(dsn, REGISTRY, "
                f"schema={self.schema!r}) as eco:`"
            )
        return pool

    @property
    def _c(self) -> Codec:
        assert self._codec is not None
        return self._codec

    # -- notifications -------------------------------------------------------------

    def _on_mail(self, _c: object, _pid: int, _channel: str, payload: str) -> None:
        if self._node is not None:
            for p in payload.split(","):
                self._node.wake(int(p))

    def _on_members(self, _c: object, _pid: int, _channel: str, payload: str) -> None:
        if payload == self.node_id:
            return
        if self._node is not None:
            self._node.members_changed()
        else:
            self._members_changed.set()

    def _on_answers(self, _c: object, _pid: int, _channel: str, payload: str) -> None:
        answers = unpack(self._reply_key, payload)
        if answers is None:
            # Anyone who can connect may NOTIFY any channel: never trust it,
            # and do not let a flood of them flood the log either.
            log.debug("%s: dropped a reply notification not sealed with our key", self)
            return
        pointers = []
        for answer in answers:
            fut = self._calls.get(answer.msg_id)
            if fut is None or fut.done():
                continue
            if answer.pointer:
                pointers.append(answer.msg_id)
            else:
                self._resolve(fut, answer)
        if pointers:
            self._spawn(self._fetch_answers(pointers))

    def _on_events(self, _c: object, _pid: int, _channel: str, _payload: str) -> None:
        self._events.notify()  # a hint: streams read the table

    def _answered_here(self, msg_id: uuid.UUID, answer: AnswerRow) -> None:
        """An answer committed by this process's node to a call of this process."""
        fut = self._calls.get(msg_id)
        if fut is not None and not fut.done():
            _, data, version, error_type, error, raised = answer
            self._resolve(fut, Answer(msg_id, version, data, error_type, error), raised)

    def _on_state(self, _c: object, _pid: int, _channel: str, payload: str) -> None:
        if payload == "*":
            targets = list(self._followers.values())
        else:
            try:
                entity_type, id_text = orjson.loads(payload)
            except (ValueError, TypeError):
                return  # not ours; hints carry nothing to trust anyway
            targets = [self._followers.get((entity_type, id_text), [])]
        for queues in targets:
            for q in queues:
                q.put_nowait(_HINT)

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- sending ---------------------------------------------------------------------

    def _encode(self, envelope: Envelope[Any], reply: bool = False) -> _Row:
        """Check one envelope from outside and encode it as a mailbox row (a
        delayed one with its due time on this ecosystem's clock)."""
        to, etype, message, delay, key = check_outside(self.registry, envelope)
        id_text = self._c.encode_id(etype.name, to.id)
        partition = partition_of(etype.name, id_text, self.partitions)
        deployment = self._deployment
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

    def _submit(self, rows: list[_Row]) -> asyncio.Future[None]:
        """Queue rows for the group commit; the future is done once they are."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((rows, fut))
        if self._flushers < _FLUSHERS:
            self._flushers += 1
            self._spawn(self._flush())
        return fut

    async def _flush(self) -> None:
        """Commit everything queued, one INSERT at a time, until the queue is empty."""
        try:
            while self._queue and self._pool is not None:
                batch, self._queue = self._queue, []
                try:
                    await self._insert([r for rows, _ in batch for r in rows])
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

    async def _insert(self, rows: list[_Row]) -> None:
        pool = self._open_pool()
        owned = self._node.ownership.epochs if self._node is not None else {}
        remote = sorted({r[1] for r in rows if r[1] not in owned})
        if any(r[7] is not None for r in rows):
            kept: list[_Row] = []
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
                    self._reply_channel,
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
        if self._node is not None:
            for r in rows:
                if r[5] <= 0:
                    self._node.wake(r[1])

    async def send(self, *envelopes: Envelope[Any]) -> None:
        self._open_pool()
        rows = [self._encode(e) for e in envelopes]
        if rows:
            await self._submit(rows)

    async def _call(self, envelope: Envelope[S]) -> S:
        self._open_pool()
        row = self._encode(envelope, reply=True)
        msg_id = row[0]
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[msg_id] = fut
        to, message, _ = unpack_envelope(envelope)
        self._call_targets[msg_id] = (row[2], to.id, message)
        self._call_rows[msg_id] = row
        try:
            await self._submit([row])
            self._committed_at[msg_id] = asyncio.get_running_loop().time()
            if self._poller is None or self._poller.done():
                self._poller = self._spawn(self._poll_answers())
            result: S = await fut
            return result
        finally:
            self._calls.pop(msg_id, None)
            self._call_targets.pop(msg_id, None)
            self._call_rows.pop(msg_id, None)
            self._committed_at.pop(msg_id, None)

    async def _poll_answers(self) -> None:
        """While calls wait: every `poll_interval` (at once after the LISTEN
        connection came back), read the answers of calls committed more than
        `poll_interval` ago from the table (their notification may be lost)."""
        loop = asyncio.get_running_loop()
        while self._committed_at and self._pool is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poll_now.wait(), self._poll)
            late = self._poll_now.is_set()
            self._poll_now.clear()
            now = loop.time()
            due = [m for m, at in self._committed_at.items() if late or now - at >= self._poll]
            if due:
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await self._fetch_answers(due)

    async def _fetch_answers(self, msg_ids: list[uuid.UUID]) -> None:
        """Read answers from the table; resend a call whose message is neither
        answered nor waiting (its commit was lost with the server: a call's
        INSERT does not wait for its flush, see `_insert`)."""
        pool = self._pool
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
            fut = self._calls.get(r[0])
            if fut is None or fut.done():
                continue
            if r[2] is not None or r[3] is not None:
                self._resolve(fut, Answer(r[0], r[1], r[2], r[3], r[4]))
            elif not r[5] and not r[6]:
                lost.append(calls[r[0]])
        if lost:
            log.warning("%s: %d call(s) lost with the server; sending them again", self, len(lost))
            await self._submit(lost)

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
        fut, row = self._calls.get(msg_id), self._call_rows.get(msg_id)
        if fut is None or fut.done() or row is None:
            return
        entity_type, id, _ = self._call_targets[msg_id]
        to = address_of(self.registry.get(entity_type, id), id)
        fut.set_exception(timer_dropped(to, row[7] or "", None))

    # -- reading -----------------------------------------------------------------------

    async def _state(self, ref: Ref[Any, S]) -> S:
        pool = self._open_pool()
        etype = self.registry.get(ref.entity_type, ref.id)
        id_text = self._c.encode_id(etype.name, ref.id)
        if etype.event_sourced:
            key = (etype.name, id_text)
            journals = await read_journals(pool, self._s, [key])
            state = rebuild_journal(self._c, etype, ref.id, journals.get(key))[0]
            if isinstance(state, Held):
                raise state.error
            if state is not UNBORN:
                return cast(S, state)
        else:
            row = await pool.fetchrow(
                f"SELECT version, data FROM {self._s}.states "
                f"WHERE entity_type = $1 AND entity_id = $2",
                etype.name,
                id_text,
            )
            if row is not None and row["data"] is not None:
                return cast(
                    S, self._c.decode_state(etype.name, ref.id, row["data"], row["version"])
                )
        try:
            initial: S = etype.instance.init(ref.id)
        except Exception as error:
            raise InitError(etype.name, ref.id, error) from error
        return initial

    async def follow(self, ref: Ref[Any, S]) -> AsyncIterator[S]:
        pool = self._open_pool()
        etype = self.registry.get(ref.entity_type, ref.id)
        id_text = self._c.encode_id(etype.name, ref.id)
        key = (etype.name, id_text)
        queue: asyncio.Queue[object] = asyncio.Queue()
        queues = self._followers.setdefault(key, [])
        queues.append(queue)
        watch_id = uuid.uuid4()
        try:
            count, state = await self._watch(pool, watch_id, key, ref.id)
            yield state
            while True:
                if await queue.get() is _CLOSED:
                    return
                while not queue.empty():  # one read answers every hint so far
                    if queue.get_nowait() is _CLOSED:
                        return
                full = True
                while full:
                    rows = await self._history(pool, watch_id, key, count)
                    full = len(rows) == _HISTORY_PAGE
                    for n, version, data in rows:
                        if n != count + 1:
                            log.warning(
                                "%s: follow(%r) missed states %d to %d (older than the "
                                "history kept)",
                                self,
                                ref,
                                count + 1,
                                n - 1,
                            )
                        count = n
                        yield cast(S, self._c.decode_state(etype.name, ref.id, data, version))
        finally:
            queues.remove(queue)
            if not queues and self._followers.get(key) is queues:
                del self._followers[key]
            if self._pool is not None:
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await self._pool.execute(
                        f"DELETE FROM {self._s}.watches WHERE watch_id = $1", watch_id
                    )

    async def _history(
        self, pool: asyncpg.Pool, watch_id: uuid.UUID, key: Key, after: int
    ) -> list[tuple[int, int, bytes]]:
        """The next committed states after activation `after`, oldest first
        (and the follower's position, so older history can be swept)."""
        rows = await pool.fetch(
            f"WITH w AS (UPDATE {self._s}.watches SET position = $4, at = now() "
            f"WHERE watch_id = $3) "
            f"SELECT activations, version, data FROM {self._s}.history "
            f"WHERE entity_type = $1 AND entity_id = $2 AND activations > $4 "
            f"ORDER BY activations LIMIT $5",
            *key,
            watch_id,
            after,
            _HISTORY_PAGE,
        )
        return [(int(r[0]), int(r[1]), r[2]) for r in rows]

    async def _watch(
        self, pool: asyncpg.Pool, watch_id: uuid.UUID, key: Key, id: Hashable
    ) -> tuple[int, Any]:
        """Register the watch under the partition's lease row lock (and write
        that row), then read the state: an owner's commit locks the row `FOR
        KEY SHARE`, so each commit of this entity either committed before we
        read, or runs after the watch is visible (a commit whose snapshot
        predates it finds the row changed and runs again) and records its
        states in `history`."""
        entity_type, id_text = key
        etype = self.registry.types[entity_type]
        try:
            initial = etype.instance.init(id)
        except Exception as error:
            raise InitError(entity_type, id, error) from error
        partition = partition_of(entity_type, id_text, self.partitions)
        async with pool.acquire() as conn, conn.transaction():
            # FOR UPDATE waits for a commit in flight; the row is then written
            # (a new version, same values), so a commit whose snapshot is older
            # than this watch sees its lease row changed and runs again.
            await conn.execute(
                f"SELECT 1 FROM {self._s}.leases WHERE partition = $1 FOR UPDATE", partition
            )
            await conn.execute(
                f"UPDATE {self._s}.leases SET expires_at = expires_at WHERE partition = $1",
                partition,
            )
            await conn.execute(
                f"INSERT INTO {self._s}.watches (watch_id, node_id, entity_type, entity_id) "
                f"VALUES ($1, $2, $3, $4)",
                watch_id,
                self.node_id,
                entity_type,
                id_text,
            )
            row = await conn.fetchrow(
                f"SELECT version, data, activations FROM {self._s}.states "
                f"WHERE entity_type = $1 AND entity_id = $2",
                entity_type,
                id_text,
            )
            journals = await read_journals(conn, self._s, [key]) if etype.event_sourced else {}
        count = 0 if row is None else int(row["activations"])
        if etype.event_sourced:  # its row counts activations; its state is its events
            state = rebuild_journal(self._c, etype, id, journals.get(key))[0]
            if isinstance(state, Held):
                raise state.error
            return count, initial if state is UNBORN else state
        if row is None or row["data"] is None:
            return count, initial
        state = self._c.decode_state(entity_type, id, row["data"], row["version"])
        return int(row["activations"]), state

    async def dead_letters(self) -> list[DeadLetter]:
        pool = self._open_pool()
        rows = await pool.fetch(
            f"SELECT seq, entity_type, entity_id, message, error_type, error, traceback, "
            f"state_version, state, recent, at FROM {self._s}.dead_letters ORDER BY seq"
        )
        return [self._dead_letter(r) for r in rows]

    def _dead_letter(self, r: Any) -> DeadLetter:
        """A stored dead letter, decoded as LocalDisk does: parts that do not
        decode (an undecodable message, say) stay raw bytes."""
        row = DeadRow(
            entity_type=r["entity_type"],
            id_text=r["entity_id"],
            message=r["message"],
            error_type=r["error_type"],
            error=r["error"],
            traceback=r["traceback"],
            state=r["state"],
            version=r["state_version"] or 0,
            recent=tuple(r["recent"]),
            at=0.0,
            id=r["seq"],
        )
        return attrs.evolve(decode_dead(self.registry, self._c, row), at=r["at"])

    async def redeliver(self, dead_letter: DeadLetter) -> None:
        """Send a dead letter's message again; the dead letter is deleted in
        the transaction that puts the message back in the mailbox."""
        if isinstance(dead_letter.message, bytes):
            raise PachytypeError(
                f"dead letter #{dead_letter.seq} for {dead_letter.to!r} holds a message that "
                f"cannot be decoded ({dead_letter.error_type}: {dead_letter.error}); fix the "
                f"message classes so it decodes, then redeliver it"
            )
        row = self._encode(make_envelope(dead_letter.to, dead_letter.message))
        pool = self._open_pool()
        async with pool.acquire() as conn, conn.transaction():
            await self._delete_dead(conn, dead_letter, "redeliver")
            await conn.execute(
                f"INSERT INTO {self._s}.mailbox (msg_id, partition, entity_type, entity_id, "
                f"payload, outside, reply) VALUES ($1, $2, $3, $4, $5, true, false)",
                *row[:5],
            )
            await conn.execute(
                "SELECT pg_notify($1, $2)", channel(self.schema, "mail"), str(row[1])
            )
        if self._node is not None:
            self._node.wake(row[1])

    async def discard(self, dead_letter: DeadLetter) -> None:
        """Delete a dead letter without delivering its message."""
        pool = self._open_pool()
        async with pool.acquire() as conn:
            await self._delete_dead(conn, dead_letter, "discard")

    async def _delete_dead(self, conn: Any, dead_letter: DeadLetter, what: str) -> None:
        found = await conn.fetchval(
            f"DELETE FROM {self._s}.dead_letters WHERE seq = $1 RETURNING seq", dead_letter.seq
        )
        if found is None:
            raise PachytypeError(
                f"cannot {what} dead letter #{dead_letter.seq} for {dead_letter.to!r}: it is "
                f"not among the Postgres dead letters of schema {self.schema!r} (already "
                f"redelivered or discarded); list them again with `await eco.dead_letters()`"
            )

    async def _forget_inbox(self, inbox: Ref[Any, Any]) -> None:
        # Its answer (if any) was committed before the asker saw it, and later
        # messages to it are not stored (nobody follows it): delete its row.
        pool = self._open_pool()
        await pool.execute(
            f"DELETE FROM {self._s}.states WHERE entity_type = $1 AND entity_id = $2",
            INBOX,
            self._c.encode_id(INBOX, inbox.id),
        )

    async def settle(self) -> None:
        pool = self._open_pool()
        while await pool.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {self._s}.mailbox WHERE due IS NULL OR due <= $1)",
            self.clock.now(),
        ):
            await asyncio.sleep(0.005)

    def events(self, ref: Ref[Any, Any], *, after: int = 0) -> AsyncIterator[tuple[int, Any]]:
        pool = self._open_pool()
        etype = event_type(self.registry, ref.entity_type, ref)
        name, id, codec = etype.name, ref.id, self._c
        id_text = codec.encode_id(name, id)

        async def read(position: int) -> list[tuple[int, object]]:
            rows = await read_events(pool, self._s, name, id_text, position, READ_BATCH)
            return [(seq, codec.decode_event(name, id, data)) for _, _, seq, data in rows]

        return tail(self._events, read, _first, after)

    def events_of(
        self, entity: type[EventSourced[Any, Any, E, Any]] | str, *, after: int = 0
    ) -> AsyncIterator[StoredEvent[E]]:
        pool = self._open_pool()
        etype = event_type(self.registry, entity)
        name, codec = etype.name, self._c

        async def read(position: int) -> list[StoredEvent[Any]]:
            out: list[StoredEvent[Any]] = []
            for at, id_text, seq, data in await read_events(
                pool, self._s, name, None, position, READ_BATCH
            ):
                id = codec.decode_id(name, id_text)
                event = codec.decode_event(name, id, data)
                out.append(StoredEvent(at, address_of(etype, id), seq, event))  # type: ignore[arg-type]
            return out

        return tail(self._events, read, _position, after)


def _first(item: tuple[int, object]) -> int:
    return item[0]


def _position(item: StoredEvent[Any]) -> int:
    return item.position


def _as_error(error: BaseException) -> PachytypeError:
    return error if isinstance(error, PachytypeError) else PachytypeError(str(error))


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Pool connections are returned as they were taken: no session state is
    ever changed on them (advisory locks are transaction-scoped, LISTEN has its
    own connection), so asyncpg's reset query (a round trip per use) is skipped."""


def _rebuild(error_type: str, text: str) -> BaseException:
    """The exception raised on another node, as close as it can travel."""
    cls = getattr(builtins, error_type, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(text)
        except TypeError:
            pass
    return RemoteError(f"{error_type}: {text}")


def _timer_of(row: _Row) -> tuple[tuple[str, str], str | None]:
    return (row[2], row[3]), row[7]


def _delayed(row: _Row) -> bool:
    return row[5] > 0
