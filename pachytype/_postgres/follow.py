"""`follow` on PostgreSQL: a follower's watch, its reads of `history`, and the
queues that hint followers of this process that there may be more to read.

Design note
-----------
`follow` registers a watch while holding the entity's partition lease row
`FOR UPDATE` and writes that row (an owner's commit locks it `FOR KEY
SHARE` and is sent again if the row changed under its snapshot, see
`_postgres/commit.py`), then reads the state: every commit of that entity
after the read sees the watch, and writes each committed state to
`history`. Notifications are only hints: the follower reads `history` after
its position, so it never skips a state (a big one, or one committed while
its LISTEN connection was down) and a forged notification yields nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Hashable
from typing import Any, Final, TypeVar, cast

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import orjson

from pachytype._address import Ref
from pachytype._codec import Codec
from pachytype._core.held import Held
from pachytype._core.turn import UNBORN
from pachytype._errors import InitError
from pachytype._postgres.client import ClientPath
from pachytype._postgres.partition import partition_of
from pachytype._postgres.reads import read_journals
from pachytype._postgres.schema import quote_schema
from pachytype._registry import Registry
from pachytype._runtime.durable import rebuild_journal

S = TypeVar("S")
Key = tuple[str, str]
"""`(entity type, id text)`."""

log = logging.getLogger("pachytype.postgres")

_CLOSED: Final = object()
_HINT: Final = object()
"""Put in follower queues when the entity may have new states (a hint, or
the LISTEN connection was restored): read `history` again."""

HISTORY_PAGE: Final = 100
"""States a follower reads from `history` per query."""


class Followers:
    """The follows of one `Postgres` instance: each one's queue of hints, by entity."""

    def __init__(
        self, registry: Registry, schema: str, node_id: str, source: ClientPath, owner: object
    ) -> None:
        self.registry = registry
        self._source = source  # the pool, codec and partitions, while open
        self.node_id = node_id
        self._s = quote_schema(schema)
        self._owner = owner  # named in log lines
        self._queues: dict[Key, list[asyncio.Queue[object]]] = {}

    def on_state(self, _c: object, _pid: int, _channel: str, payload: str) -> None:
        """A notification that an entity (or, `*`, any) has new states (a LISTEN callback)."""
        if payload == "*":
            targets = list(self._queues.values())
        else:
            try:
                entity_type, id_text = orjson.loads(payload)
            except (ValueError, TypeError):
                return  # not ours; hints carry nothing to trust anyway
            targets = [self._queues.get((entity_type, id_text), [])]
        for queues in targets:
            for q in queues:
                q.put_nowait(_HINT)

    def hint_all(self) -> None:
        """Every follower reads `history` again (notifications may have been lost)."""
        for queues in self._queues.values():
            for q in queues:
                q.put_nowait(_HINT)

    def close(self) -> None:
        """End every follow (the ecosystem closed)."""
        for queues in self._queues.values():
            for q in queues:
                q.put_nowait(_CLOSED)
        self._queues.clear()

    async def follow(self, ref: Ref[Any, S]) -> AsyncIterator[S]:
        """`Postgres.follow` (raises `EcosystemClosedError` at the first step if closed)."""
        source = self._source
        pool = source.open_pool()
        c = source.codec
        assert c is not None
        etype = self.registry.get(ref.entity_type, ref.id)
        id_text = c.encode_id(etype.name, ref.id)
        key = (etype.name, id_text)
        queue: asyncio.Queue[object] = asyncio.Queue()
        queues = self._queues.setdefault(key, [])
        queues.append(queue)
        watch_id = uuid.uuid4()
        try:
            count, state = await self._watch(pool, c, source.partitions, watch_id, key, ref.id)
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
                    full = len(rows) == HISTORY_PAGE
                    for n, version, data in rows:
                        if n != count + 1:
                            log.warning(
                                "%s: follow(%r) missed states %d to %d (older than the "
                                "history kept)",
                                self._owner,
                                ref,
                                count + 1,
                                n - 1,
                            )
                        count = n
                        yield cast(S, c.decode_state(etype.name, ref.id, data, version))
        finally:
            queues.remove(queue)
            if not queues and self._queues.get(key) is queues:
                del self._queues[key]
            end = source.pool
            if end is not None:
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await end.execute(
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
            HISTORY_PAGE,
        )
        return [(int(r[0]), int(r[1]), r[2]) for r in rows]

    async def _watch(
        self,
        pool: asyncpg.Pool,
        codec: Codec,
        partitions: int,
        watch_id: uuid.UUID,
        key: Key,
        id: Hashable,
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
        partition = partition_of(entity_type, id_text, partitions)
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
            state = rebuild_journal(codec, etype, id, journals.get(key))[0]
            if isinstance(state, Held):
                raise state.error
            return count, initial if state is UNBORN else state
        if row is None or row["data"] is None:
            return count, initial
        state = codec.decode_state(entity_type, id, row["data"], row["version"])
        return int(row["activations"]), state
