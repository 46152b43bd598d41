"""Postgres: immortal entities on many machines, sharing one PostgreSQL.

Design note
-----------
Every `Postgres(dsn, registry, schema=...)` opened with `node=True` (the
default) is a *node*: it takes a fair share of the schema's partitions and
activates their entities (`_pg_node`, `_pg_lease`, `_pg_batch`). Any
instance, node or not (`node=False` is a pure client), accepts `send`,
`call`, `state`, `follow` and `dead_letters` for any entity:

* `send` checks every envelope (entity type, message class, id), encodes
  them and inserts them into the mailbox in one transaction; the owner is
  woken by `NOTIFY` (it also polls). Each outside message has an id; a
  resend after a lost commit acknowledgement is dropped by the receiver's
  dedupe record.
* `call` is a `send` whose row asks for a reply: an owner in this process
  resolves the caller's future directly; another node writes a `replies`
  row and NOTIFYs it (the caller also polls, in case a notification is
  missed).
* `follow` registers a watch row, then reads the state under a row lock
  (`FOR SHARE`), so any later commit of that entity sees the watch and
  NOTIFYs each committed state, in order (numbered by the entity's
  activation count; a state too big for a notification is re-read, which
  may skip intermediate states).
* `state` reads the committed row (or `init(id)`), never activating.

Rolling upgrades: a node refuses to join while live nodes run a registry
with a different fingerprint. To deploy new entity types, stop the old
nodes (SIGTERM hands their partitions over; mail stays in the mailbox),
then start the new ones. Stored states of older `state_version`s are
upgraded on load by the `@upgrade` chain and written back in the new
version at their next activation. Mail written by the old version is
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
import base64
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

from pachytype._address import Envelope, Ref, make_envelope, unpack
from pachytype._budget import DEFAULT_BUDGET, watch_activations
from pachytype._codec import Codec
from pachytype._core.envelopes import check_outside
from pachytype._deadletter import DeadLetter
from pachytype._durable import decode_dead
from pachytype._ecosystem import Ecosystem
from pachytype._errors import ActivationError, EcosystemClosedError, InitError, PachytypeError
from pachytype._pg_batch import Key, new_message_id
from pachytype._pg_dsn import connect_error, redact
from pachytype._pg_lease import Membership, Ownership, channel, new_node_id
from pachytype._pg_node import Node
from pachytype._pg_partition import partition_of
from pachytype._pg_schema import SchemaError, migrate, quote_schema, stored_partitions
from pachytype._registry import Registry
from pachytype._store import DeadRow

S = TypeVar("S")

log = logging.getLogger("pachytype.postgres")

DEFAULT_PARTITIONS: Final = 64
_CLOSED: Final = object()
_RESYNC: Final = object()
"""Put in follower queues after the LISTEN connection was lost and restored:
notifications may have been missed, so re-read the state."""

# A row to insert: (msg id, partition, entity type, id text, payload, delay s)
_Row = tuple[uuid.UUID, int, str, str, bytes, float]


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
        self._s = quote_schema(schema)
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._node: Node | None = None
        self._codec: Codec | None = None
        self.partitions = partitions or DEFAULT_PARTITIONS
        self._calls: dict[uuid.UUID, asyncio.Future[Any]] = {}
        self._call_targets: dict[uuid.UUID, tuple[str, Hashable, object]] = {}
        self._followers: dict[Key, list[asyncio.Queue[object]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<Postgres {redact(self._dsn)} schema={self.schema!r} node={self.node_id!r}>"

    # -- lifecycle -------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            raise RuntimeError(f"this Postgres ecosystem ({self.schema!r}) is already open")
        _ = self.registry.types
        self._codec = Codec(self.registry)
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
            membership = Membership(
                self.schema,
                self.node_id,
                self.registry.fingerprint,
                stored,
                self._lease,
                Ownership(),
            )
            if not self.is_node:
                await membership.check_fingerprint(conn, self.registry.package)
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
                local_calls=self._calls,
            )
            # An activation runs inside the batch's transaction: cut it well
            # before the session's idle-in-transaction timeout (half a lease).
            node.budget = min(DEFAULT_BUDGET, self._lease / 4)
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
        await conn.add_listener(channel(self.schema, "reply"), self._on_reply)
        await conn.add_listener(channel(self.schema, "state"), self._on_state)

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
                    q.put_nowait(_RESYNC)
            if self._node is not None:
                self._node.members_changed()
            return

    async def close(self) -> None:
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
        await pool.close()
        closed = EcosystemClosedError("the ecosystem closed before this message was handled")
        for fut in self._calls.values():
            if not fut.done():
                fut.set_exception(closed)
        self._calls.clear()
        for queues in self._followers.values():
            for q in queues:
                q.put_nowait(_CLOSED)
        self._followers.clear()

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
        return dict(self._node.blocked) if self._node is not None else {}

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
            self._node.wake(int(payload))

    def _on_members(self, _c: object, _pid: int, _channel: str, payload: str) -> None:
        if self._node is not None and payload != self._node.node_id:
            self._node.members_changed()

    def _on_reply(self, _c: object, _pid: int, _channel: str, payload: str) -> None:
        msg_id = uuid.UUID(payload)
        if msg_id in self._calls:
            self._spawn(self._fetch_reply(msg_id))

    def _on_state(self, _c: object, _pid: int, _channel: str, payload: str) -> None:
        entity_type, id_text, count, version, data = orjson.loads(payload)
        for q in self._followers.get((entity_type, id_text), ()):
            q.put_nowait((count, version, None if data is None else base64.b64decode(data)))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- sending ---------------------------------------------------------------------

    def _encode(self, envelope: Envelope[Any]) -> _Row:
        """Check one envelope from outside and encode it as a mailbox row."""
        to, etype, message, delay = check_outside(self.registry, envelope)
        id_text = self._c.encode_id(etype.name, to.id)
        return (
            new_message_id(),
            partition_of(etype.name, id_text, self.partitions),
            etype.name,
            id_text,
            self._c.encode_message(etype.name, message),
            delay,
        )

    async def _insert(self, rows: list[_Row], reply: bool) -> None:
        pool = self._open_pool()
        owned = self._node.ownership.epochs if self._node is not None else {}
        remote = sorted({str(r[1]) for r in rows if r[1] not in owned})
        columns = [list(c) for c in zip(*rows, strict=True)]
        for attempt in (1, 2):
            try:
                await pool.fetchval(
                    f"WITH m AS (INSERT INTO {self._s}.mailbox (msg_id, partition, entity_type, "
                    f"entity_id, payload, deliver_at, outside, reply) "
                    f"SELECT u.i, u.p, u.t, u.e, u.b, "
                    f"CASE WHEN u.d > 0 THEN now() + u.d * interval '1 second' END, true, $7 "
                    f"FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::bytea[], "
                    f"$6::float8[]) AS u(i, p, t, e, b, d)) "
                    f"SELECT count(pg_notify($8, n)) FROM unnest($9::text[]) AS n",
                    *columns,
                    reply,
                    channel(self.schema, "mail"),
                    remote,
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
            await self._insert(rows, reply=False)

    async def call(self, envelope: Envelope[S]) -> S:
        self._open_pool()
        row = self._encode(envelope)
        msg_id = row[0]
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[msg_id] = fut
        to, message, _ = unpack(envelope)
        self._call_targets[msg_id] = (row[2], to.id, message)
        try:
            await self._insert([row], reply=True)
            while True:
                try:
                    result: S = await asyncio.wait_for(asyncio.shield(fut), self._poll)
                    return result
                except TimeoutError:
                    await self._fetch_reply(msg_id)  # a missed notification
        finally:
            self._calls.pop(msg_id, None)
            self._call_targets.pop(msg_id, None)

    async def _fetch_reply(self, msg_id: uuid.UUID) -> None:
        fut = self._calls.get(msg_id)
        pool = self._pool
        if fut is None or fut.done() or pool is None:
            return
        row = await pool.fetchrow(
            f"DELETE FROM {self._s}.replies WHERE msg_id = $1 "
            f"RETURNING version, data, error_type, error",
            msg_id,
        )
        if row is None or fut.done():
            return
        self._resolve(fut, msg_id, row)

    def _resolve(self, fut: asyncio.Future[Any], msg_id: uuid.UUID, row: Any) -> None:
        entity_type, id, message = self._call_targets[msg_id]
        if row["error_type"] is None:
            fut.set_result(self._c.decode_state(entity_type, id, row["data"], row["version"]))
            return
        cause = _rebuild(row["error_type"], row["error"])
        failure = ActivationError(entity_type, id, message, cause)
        failure.__cause__ = cause
        fut.set_exception(failure)

    # -- reading -----------------------------------------------------------------------

    async def state(self, ref: Ref[Any, S]) -> S:
        pool = self._open_pool()
        etype = self.registry.get(ref.entity_type, ref.id)
        id_text = self._c.encode_id(etype.name, ref.id)
        row = await pool.fetchrow(
            f"SELECT version, data FROM {self._s}.states WHERE entity_type = $1 AND entity_id = $2",
            etype.name,
            id_text,
        )
        if row is not None:
            return cast(S, self._c.decode_state(etype.name, ref.id, row["data"], row["version"]))
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
                item = await queue.get()
                if item is _CLOSED:
                    return
                if item is _RESYNC:
                    n, state = await self._read(pool, key, ref.id)
                else:
                    n, version, data = _state_item(item)
                    if n <= count:
                        continue
                    if data is None:  # too big for a notification
                        n, state = await self._read(pool, key, ref.id)
                    else:
                        state = self._c.decode_state(etype.name, ref.id, data, version)
                if n <= count:
                    continue
                count = n
                yield state
        finally:
            queues.remove(queue)
            if not queues and self._followers.get(key) is queues:
                del self._followers[key]
            if self._pool is not None:
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await self._pool.execute(
                        f"DELETE FROM {self._s}.watches WHERE watch_id = $1", watch_id
                    )

    async def _read(self, pool: asyncpg.Pool, key: Key, id: Hashable) -> tuple[int, Any]:
        """`(activation count, state)` as committed now."""
        row = await pool.fetchrow(
            f"SELECT version, data, activations FROM {self._s}.states "
            f"WHERE entity_type = $1 AND entity_id = $2",
            *key,
        )
        if row is None:
            return 0, self.registry.types[key[0]].instance.init(id)
        state = self._c.decode_state(key[0], id, row["data"], row["version"])
        return int(row["activations"]), state

    async def _watch(
        self, pool: asyncpg.Pool, watch_id: uuid.UUID, key: Key, id: Hashable
    ) -> tuple[int, Any]:
        """Register the watch, then read the state under a share lock: a commit
        of this entity either finished before (we read it) or sees the watch."""
        entity_type, id_text = key
        etype = self.registry.types[entity_type]
        try:
            initial = etype.instance.init(id)
        except Exception as error:
            raise InitError(entity_type, id, error) from error
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO {self._s}.watches (watch_id, node_id, entity_type, entity_id) "
                f"VALUES ($1, $2, $3, $4)",
                watch_id,
                self.node_id,
                entity_type,
                id_text,
            )
            await conn.execute(
                f"INSERT INTO {self._s}.states "
                f"(entity_type, entity_id, partition, version, data, activations) "
                f"VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT DO NOTHING",
                entity_type,
                id_text,
                partition_of(entity_type, id_text, self.partitions),
                etype.state_version,
                self._c.encode_state(entity_type, initial),
            )
            row = await conn.fetchrow(
                f"SELECT version, data, activations FROM {self._s}.states "
                f"WHERE entity_type = $1 AND entity_id = $2 FOR SHARE",
                entity_type,
                id_text,
            )
        assert row is not None
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

    async def settle(self) -> None:
        pool = self._open_pool()
        while await pool.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {self._s}.mailbox "
            f"WHERE deliver_at IS NULL OR deliver_at <= now())"
        ):
            await asyncio.sleep(0.005)


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


def _state_item(item: object) -> tuple[int, int, bytes | None]:
    """A follower queue item: (activation count, state version, data or None)."""
    assert isinstance(item, tuple)
    n, version, data = item
    return int(n), int(version), data
