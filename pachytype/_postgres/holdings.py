"""What a `PostgresStore` holds between two calls of its runtime: the rows it
has handed over (`held`), the partitions and epochs the runtime knows of, the
claim horizon, the recovery in progress and the id range, and the connection
it keeps; the base class its parts (`claims.py`, `commit.py`, `store.py`)
share, with the rules they all apply: which partition a key is in, which
connection a claim or a commit runs on, and what a failed database call does.

Design note (the kept connection)
---------------------------------
Claims and commits alternate on one connection the store keeps from its
first claim to its close (`borrow`, `give_back`), instead of a pool acquire
and release each: a release shields a task and runs callbacks (about a
twentieth of a node's own CPU per call at 32 calls in flight, each cycle
paying two). A claim beside a commit under way takes a connection of the
pool, as before. A connection that fails, or whose statement was cut off
(cancelled), goes back to the pool at once: the pool ends its transaction
or its cancellation, or drops it, and the next claim keeps another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]  # no stubs published

from pachytype._clock import Clock
from pachytype._postgres.lease import Ownership, channel
from pachytype._postgres.partition import partition_of
from pachytype._postgres.schema import quote_schema
from pachytype._store import AnswerRow, EntityKey

log = logging.getLogger("pachytype.postgres")

NODE_IDS: Final = 1 << 62
"""Ids of mail created by node runtimes start here (`seq` stays below)."""

SESSION_IDS: Final = 1 << 31
"""Ids one store session may give (each session has a range of its own)."""

UNKNOWN_OUTCOME: Final = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    # The connection's protocol is out of step with the server, e.g. when a
    # process paused mid-commit resumes and reads its statement's result and
    # the server's end of its session together: the outcome is unknown.
    asyncpg.InternalClientError,
)
"""Errors of a database call whose outcome is unknown: reported as fenced
(the runtime reloads from the database); anything else is a bug."""

HeldRow = tuple[int, uuid.UUID | None, str | None, bytes | None]
"""A held row: (partition, outside message id or None, reply channel, reply key)."""


class StoreRecords:
    """The state of one worker's store, and the rules every part of it applies."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        partitions: int,
        node_id: str,
        ownership: Ownership,
        share: Callable[[int], bool],
        is_local: Callable[[uuid.UUID], bool],
        resolve: Callable[[uuid.UUID, AnswerRow], None],
        clock: Clock,
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.partitions = partitions
        self.node_id = node_id
        self.ownership = ownership
        self._share = share
        self._is_local = is_local
        self._resolve = resolve
        self._clock = clock
        self._s = quote_schema(schema)
        self._wake: Callable[[], None] = lambda: None
        self._delivered: dict[int, int] = {}  # partition -> epoch, as the runtime knows it
        self._leaving: dict[int, int] = {}  # lost partition -> its epoch, until `leave`
        self._reset = False  # a commit failed: the runtime forgot everything
        self._suspect_all = False  # ... and it may have been refused: count attempts
        self._xmin = "0"  # the last claim's snapshot horizon (xid8 as text)
        self._floor: int | None = None  # the first recovery page's horizon, while recovering
        self._recovering: dict[int, list[Any]] = {}  # partition -> [last seq read, suspect?]
        self._claimed_meanwhile = False  # other partitions were claimed while recovering
        self._told = asyncio.Event()  # set at the end of each `news()`
        self._held: dict[int, HeldRow] = {}
        self._outside: dict[uuid.UUID, int] = {}  # outside message ids held -> runtime id
        self._attempted: set[int] = set()  # ids with an `attempts` row
        self._watched: set[EntityKey] = set()
        # Rows the commit under way deletes (seq, or outside id -> its number):
        # a claim beside it may still see them (its snapshot is older), so it
        # skips them, until a claim begun after that commit finished.
        self._consuming: dict[int, int] = {}
        self._consuming_ids: dict[uuid.UUID, int] = {}
        self._commit_no = 0  # commits sent
        self._done_no = 0  # commits finished (written or not)
        self._base = NODE_IDS
        self._backoff = 0.0
        self._mail_channel = channel(schema, "mail")
        self._state_channel = channel(schema, "state")
        self._events_channel = channel(schema, "events")
        self._kept: asyncpg.Connection | None = None
        """The connection claims and commits run on (acquired at the first one)."""
        self._lent = False  # the kept connection is in use (a claim beside a commit waits not)
        self._closed = False

    async def borrow(self) -> asyncpg.Connection:
        """A connection for one claim or commit: the kept one if it is free,
        else one of the pool (kept from now on if none is). Hand it back with
        `give_back`."""
        kept = self._kept
        if kept is not None and not self._lent:
            if not kept.is_closed():
                self._lent = True
                return kept
            self._kept = None  # lost with the server: the pool drops it
            await _release(self.pool, kept)
        conn = await self.pool.acquire()
        if self._kept is None and not self._closed:
            self._kept, self._lent = conn, True
        return conn

    async def give_back(self, conn: asyncpg.Connection, failed: bool = False) -> None:
        """Return a connection `borrow` gave; `failed`: its statement raised or
        was cancelled (the pool ends its transaction or drops it)."""
        if conn is self._kept:
            self._lent = False
            if not failed and not self._closed:
                return
            self._kept = None
        await _release(self.pool, conn)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection for one claim or commit (`borrow`), handed back after
        it (`give_back`: as failed if the block raised or was cancelled)."""
        conn = await self.borrow()
        try:
            yield conn
        except BaseException:
            await self.give_back(conn, failed=True)
            raise
        await self.give_back(conn)

    async def release_kept(self) -> None:
        """Give the kept connection back to the pool (the store closes: the
        pool's close waits for every connection)."""
        self._closed = True
        kept, self._kept = self._kept, None
        if kept is not None and not self._lent:
            await _release(self.pool, kept)

    def scope_of(self, entity_type: str, id_text: str) -> int:
        return partition_of(entity_type, id_text, self.partitions)

    def _failed(self, error: BaseException) -> None:
        """A store call failed: the runtime forgets everything and reloads (after
        a pause that grows while the database stays unreachable)."""
        self._reset = True
        self._backoff = min(max(self._backoff * 2, 0.05), 2.0)
        log.warning("node %s: a database call failed: %s", self.node_id, error_text(error))


async def _release(pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
    """Give a connection back to its pool (closed or not)."""
    try:
        await pool.release(conn)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        conn.terminate()  # (the pool forgets it either way)


def error_text(error: BaseException) -> str:
    """An error as one line: its class and its message."""
    return f"{type(error).__name__}: {error}"
