"""Postgres: immortal entities on many machines, sharing one PostgreSQL.

Design note
-----------
Every `Postgres(dsn, registry, schema=...)` opened with `node=True` (the
default) is a *node*: it takes a fair share of the schema's partitions and
activates their entities (`_postgres/node.py`, `_postgres/lease.py`, `_postgres/store.py`). Any
instance, node or not (`node=False` is a pure client), accepts `send`,
`call`, `state`, `follow` and `dead_letters` for any entity:

* `send` and `call` go through this instance's *group commit* and reply
  channel (`_postgres/client.py`: `ClientPath`); a call's answer is
  notified in the transaction that commits it, or read from the table.
* `follow` registers a watch under the entity's partition lease row and
  reads committed states from `history` (`_postgres/follow.py`).
* `state`, `events`, `events_of` read committed rows (`_postgres/reads.py`),
  never activating; dead letters are listed, redelivered and discarded by
  `_postgres/deadletters.py`.

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
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from datetime import timedelta
from typing import Any, Final, TypeVar

import asyncpg  # type: ignore[import-untyped]  # no stubs published

from pachytype._address import Envelope, Ref, make_envelope
from pachytype._budget import DEFAULT_BUDGET, watch_activations
from pachytype._clock import Clock, SystemClock
from pachytype._codec import Codec
from pachytype._compat import describe_registry
from pachytype._core.held import RETRY_HELD
from pachytype._deadletter import DeadLetter
from pachytype._ecosystem import Ecosystem, event_type
from pachytype._errors import PachytypeError
from pachytype._event_sourced import EventSourced
from pachytype._events import Signal, StoredEvent
from pachytype._inbox import INBOX
from pachytype._postgres import deadletters
from pachytype._postgres.client import ClientPath
from pachytype._postgres.deploy import Deployment
from pachytype._postgres.dsn import connect_error, redact
from pachytype._postgres.follow import Followers
from pachytype._postgres.lease import Membership, Ownership, channel, new_node_id
from pachytype._postgres.node import Node
from pachytype._postgres.reads import entity_events, read_state, type_events
from pachytype._postgres.schema import SchemaError, migrate, quote_schema, stored_partitions
from pachytype._registry import Registry
from pachytype._runtime.durable.recent import RECENT_EVERY, check_recent_every

S = TypeVar("S")
E = TypeVar("E")

log = logging.getLogger("pachytype.postgres")

DEFAULT_PARTITIONS: Final = 64


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
      without being notified. One loop (the default) makes the largest
      transactions, the least work per message for the database and this
      process: the fastest for calls and sends as they come. Two or more
      commit side by side on as many connections: a backlog drains faster
      when the database has cores to spare (`make bench` shows both).
    * `node_id`: this node's name in the leases (default host-pid-random).
    * `clock`: where time is read and delayed messages wait (a `ManualClock`
      in tests); due times are stored on it, so every process of a schema
      should use the same kind of clock.
    * `retry_held`: seconds between two attempts to load a state that could
      not be loaded (its entity is held meanwhile, its mail kept in order).
    * `recent_every`: seconds at most between an entity running a message and
      the write of its recent messages (a dead letter's context): after a
      kill or a lost lease, a dead letter misses at most those of the last
      `recent_every` seconds. 0 writes them with every commit, at a cost.
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
        workers: int = 1,
        batch: int = 2000,
        poll_interval: float = 0.5,
        node_id: str | None = None,
        clock: Clock | None = None,
        retry_held: float = RETRY_HELD,
        recent_every: float = RECENT_EVERY,
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
        self.recent_every = check_recent_every(recent_every, f"Postgres(schema={schema!r})")
        self._events = Signal()
        self._s = quote_schema(schema)
        self._listener: asyncpg.Connection | None = None
        self._node: Node | None = None
        self.partitions = partitions or DEFAULT_PARTITIONS
        self._tasks: set[asyncio.Task[None]] = set()
        # The client path holds the pool (None while closed) and what encoding
        # needs, so that sends and calls read them without a detour.
        self._client = ClientPath(registry, schema, self.clock, poll_interval, self._spawn, self)
        self._client.partitions = self.partitions
        self._followers = Followers(registry, schema, self.node_id, self._client, self)
        self._membership: Membership | None = None
        self._members_changed = asyncio.Event()

    def __repr__(self) -> str:
        return f"<Postgres {redact(self._dsn)} schema={self.schema!r} node={self.node_id!r}>"

    @property
    def _pool(self) -> asyncpg.Pool | None:
        """The connection pool, None while closed (kept by the client path)."""
        return self._client.pool

    # -- lifecycle -------------------------------------------------------------

    async def _open(self) -> None:
        if self._pool is not None:
            raise RuntimeError(f"this Postgres ecosystem ({self.schema!r}) is already open")
        _ = self.registry.types
        self._client.codec = Codec(self.registry)
        self._client.deployment = Deployment(
            self.schema, describe_registry(self.registry), self._lease
        )
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
        self._client.pool = pool
        try:
            await self._prepare(pool)
        except BaseException:
            self._client.pool = None
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
            self.partitions = self._client.partitions = stored
            deployment = self._client.deployment
            assert deployment is not None
            membership = Membership(
                self.schema,
                self.node_id,
                self.registry.fingerprint,
                stored,
                self._lease,
                Ownership(),
                deployment,
                kind="node" if self.is_node else "client",
            )
            self._membership = membership
            if not self.is_node:
                await membership.join(conn)
                await membership.client_beat(conn)
                self._spawn(self._client_heartbeat())
        await self._listen()
        if self.is_node:
            node = Node(
                pool,
                self.registry,
                self._c,
                membership,
                workers=self._workers,
                batch=self._batch,
                poll_interval=self._poll,
                is_local=self._client.calls.__contains__,
                resolve=self._client.answered_here,
                clock=self.clock,
                # A runaway activation is cut well before its lease could expire.
                activation_budget=min(DEFAULT_BUDGET, self._lease / 4),
                retry_held=self.retry_held,
                recent_every=self.recent_every,
            )
            await node.start()
            self._node = self._client.node = node

    async def _listen(self) -> None:
        conn = await asyncpg.connect(
            self._dsn,
            server_settings={
                "application_name": f"pachytype {self.schema} listen {self.node_id}"[:63]
            },
        )
        self._listener = conn
        conn.add_termination_listener(self._on_listener_lost)
        if self.is_node:
            # (a client owns no partition: every insert's notification would
            # reach it for nothing, once per group commit of every process)
            await conn.add_listener(channel(self.schema, "mail"), self._on_mail)
        await conn.add_listener(channel(self.schema, "members"), self._on_members)
        await conn.add_listener(self._client.reply_channel, self._client.on_answers)
        await conn.add_listener(channel(self.schema, "state"), self._followers.on_state)
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
            self._followers.hint_all()
            self._client.poll_now.set()  # answers may have been notified meanwhile
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
            except SchemaError as error:  # a newer pachytype migrated the tables
                log.error("%s: %s; every operation now raises it", self, error)
                self._client.refused = error
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("%s: client heartbeat failed: %s", self, error)

    async def _close(self) -> None:
        pool = self._pool
        if pool is not None and not self.is_node and self._membership is not None:
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                async with pool.acquire() as conn:
                    await self._membership.leave(conn)
        pool, self._client.pool = self._pool, None
        if pool is None:
            return
        node, self._node, self._client.node = self._node, None, None
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
        self._client.close()
        self._followers.close()
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
        return self._client.open_pool()

    @property
    def _c(self) -> Codec:
        codec = self._client.codec
        assert codec is not None
        return codec

    # -- notifications (the LISTEN callbacks; replies and states go to their owners) --

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

    def _on_events(self, _c: object, _pid: int, _channel: str, _payload: str) -> None:
        self._events.notify()  # a hint: streams read the table

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- sending: the client path (`_postgres/client.py`) -----------------------------

    def send(self, *envelopes: Envelope[Any]) -> Coroutine[Any, Any, None]:
        # The client path's own coroutine: no second frame per send.
        return self._client.send(envelopes)

    def _call(self, envelope: Envelope[S]) -> Coroutine[Any, Any, S]:
        return self._client.call(envelope)

    # -- reading -----------------------------------------------------------------------

    async def _state(self, ref: Ref[Any, S]) -> S:
        pool = self._open_pool()
        etype = self.registry.get(ref.entity_type, ref.id)
        return await read_state(pool, self._s, self._c, etype, ref)

    def follow(self, ref: Ref[Any, S]) -> AsyncIterator[S]:
        return self._followers.follow(ref)

    async def dead_letters(self) -> list[DeadLetter]:
        pool = self._open_pool()
        return await deadletters.dead_letters(pool, self._s, self.registry, self._c)

    async def redeliver(self, dead_letter: DeadLetter) -> None:
        """Send a dead letter's message again; the dead letter is deleted in
        the transaction that puts the message back in the mailbox."""
        deadletters.check_redeliverable(dead_letter)
        row = self._client.encode(make_envelope(dead_letter.to, dead_letter.message))
        pool = self._open_pool()
        mail = channel(self.schema, "mail")
        await deadletters.redeliver(pool, self._s, self.schema, mail, dead_letter, row)
        if self._node is not None:
            self._node.wake(row[1])

    async def discard(self, dead_letter: DeadLetter) -> None:
        """Delete a dead letter without delivering its message."""
        await deadletters.discard(self._open_pool(), self._s, self.schema, dead_letter)

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
        return entity_events(pool, self._s, self._c, etype, ref, self._events, after)

    def events_of(
        self, entity: type[EventSourced[Any, Any, E, Any]] | str, *, after: int = 0
    ) -> AsyncIterator[StoredEvent[E]]:
        pool = self._open_pool()
        etype = event_type(self.registry, entity)
        return type_events(pool, self._s, self._c, etype, self._events, after)


def _as_error(error: BaseException) -> PachytypeError:
    return error if isinstance(error, PachytypeError) else PachytypeError(str(error))


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Pool connections are returned as they were taken: no session state is
    ever changed on them (advisory locks are transaction-scoped, LISTEN has its
    own connection), so asyncpg's reset query (a round trip per use) is skipped."""
