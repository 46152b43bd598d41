"""Read models: fold one or more event streams into a local, read-only view.

Design note
-----------
A projection follows `eco.events_of(...)` of each of its sources (one
stream task per source) and applies what arrives, in batches, to its view:

* `Projection(eco, Cart, apply=fold, initial=...)`: the view is a value in
  memory, `view = apply(view, stored_event)` per event. A restart starts
  from `initial` and position 0 (the view is rebuilt from the streams).
* `SqliteProjection(eco, Cart, path=..., schema=..., apply=...)`: the view
  is tables in a local SQLite file the projection owns; `apply(conn,
  stored_event)` writes them. Each batch is one transaction that also
  writes each source's position (table `pachytype_positions`), so after a
  restart (of the process, or of the ecosystem) the projection resumes just
  after the last event it applied, never replaying from zero and never
  applying an event twice.

Positions are visible (`positions`, per source entity type), as are the
events applied since this projection was opened (`applied`). Readers wait
on readiness: `await projection.wait_until(lambda p: ...)` returns once a
predicate over the projection holds. Order: each source's events arrive in
its stream order (per entity in sequence order); two sources interleave in
arrival order. A raise in `apply` stops the projection (the batch is not
applied, its position not advanced) and `wait_until` raises it: a read
model that silently skips events would answer wrongly forever.

Batches: stream tasks put events in one bounded queue; the applier takes
what is there (up to `BATCH`) and applies it at once, so under load one
SQLite transaction covers many events and the lag stays about one batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from pachytype._ecosystem import Ecosystem
from pachytype._errors import PachytypeError, ProjectionError
from pachytype._events import StoredEvent

V = TypeVar("V")

BATCH = 1000
"""Most events applied in one go (one transaction for `SqliteProjection`)."""

_QUEUE = 10_000
"""Events read ahead of the applier (stream tasks wait when it is full)."""

Source = type[Any] | str
"""An event-sourced entity class, or its entity type name."""


class _Base(ABC):
    """What every projection shares: the stream tasks, the applier, positions."""

    def __init__(self, eco: Ecosystem, sources: Sequence[Source]) -> None:
        if not sources:
            raise ValueError("a projection needs at least one source (an EventSourced class)")
        self.eco = eco
        self.sources = [s if isinstance(s, str) else s.entity_type for s in sources]
        self.positions: dict[str, int] = dict.fromkeys(self.sources, 0)
        """The position of the last event applied, per source entity type."""
        self.applied = 0
        """Events applied since this projection was opened."""
        self.error: BaseException | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._queue: asyncio.Queue[tuple[str, StoredEvent[Any]]] = asyncio.Queue(_QUEUE)
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Load the checkpoint and start following the sources."""
        self.positions.update(self._load_positions())
        loop = asyncio.get_running_loop()
        for source in self.sources:
            stream = self.eco.events_of(source, after=self.positions[source])
            self._tasks.append(loop.create_task(self._read(source, stream)))
        self._tasks.append(loop.create_task(self._apply_loop()))

    async def close(self) -> None:
        """Stop following (what was applied stays applied)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._close()

    async def wait_until(
        self, predicate: Callable[[Self], bool], timeout: float | None = None
    ) -> None:
        """Return once `predicate(self)` holds (checked after each batch);
        raises `ProjectionError` if the projection stopped, `TimeoutError` after
        `timeout` seconds."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                while not predicate(self):
                    if self.error is not None:
                        raise ProjectionError(
                            f"the projection of {', '.join(self.sources)} stopped: {self.error}"
                        ) from self.error
                    await self._changed.wait()

    async def _read(self, source: str, stream: Any) -> None:
        async for item in stream:
            await self._queue.put((source, item))

    async def _apply_loop(self) -> None:
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while len(batch) < BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                self._apply(batch)
            except Exception as error:
                self.error = error
                async with self._changed:
                    self._changed.notify_all()
                return
            for source, item in batch:
                self.positions[source] = item.position
            self.applied += len(batch)
            async with self._changed:
                self._changed.notify_all()

    @abstractmethod
    def _load_positions(self) -> dict[str, int]: ...

    @abstractmethod
    def _apply(self, batch: list[tuple[str, StoredEvent[Any]]]) -> None: ...

    @abstractmethod
    def _close(self) -> None:
        """Release what the view holds."""


class Projection(_Base, Generic[V]):
    """A read model in memory: `view = apply(view, stored_event)` for each event
    of the sources, from `initial` (rebuilt from position 0 at each open)::

        async with Projection(eco, Shard, apply=names_taken, initial=frozenset()) as taken:
            await taken.wait_until(lambda p: "ada" in p.view)
    """

    def __init__(
        self,
        eco: Ecosystem,
        *sources: Source,
        apply: Callable[[V, StoredEvent[Any]], V],
        initial: V,
    ) -> None:
        super().__init__(eco, sources)
        self.view: V = initial
        """The current view (replace, never mutate, in `apply`)."""
        self._fold = apply

    def _load_positions(self) -> dict[str, int]:
        return {}

    def _close(self) -> None:
        """Nothing to release: the view is a value."""

    def _apply(self, batch: list[tuple[str, StoredEvent[Any]]]) -> None:
        view = self.view
        fold = self._fold
        for _, item in batch:
            view = fold(view, item)
        self.view = view


class SqliteProjection(_Base):
    """A read model in a local SQLite file that survives restarts: `schema`
    (SQL run at open) makes its tables, `apply(conn, stored_event)` writes
    them, and each batch commits with the sources' positions, so an open
    resumes after the last event applied::

        names = SqliteProjection(
            eco, Shard, path="names.db",
            schema="CREATE TABLE IF NOT EXISTS taken (name TEXT PRIMARY KEY)",
            apply=record_name,
        )
        async with names:
            rows = names.query("SELECT 1 FROM taken WHERE name = ?", ("ada",))
    """

    def __init__(
        self,
        eco: Ecosystem,
        *sources: Source,
        path: str | Path,
        schema: str,
        apply: Callable[[sqlite3.Connection, StoredEvent[Any]], None],
    ) -> None:
        super().__init__(eco, sources)
        self.path = Path(path)
        self._schema = schema
        self._write = apply
        self._conn: sqlite3.Connection | None = None

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise PachytypeError(
                f"the projection {str(self.path)!r} is not open: use `async with` on it"
            )
        return self._conn

    def _load_positions(self) -> dict[str, int]:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS pachytype_positions "
            "(source TEXT PRIMARY KEY, position INTEGER NOT NULL)"
        )
        conn.executescript(self._schema)
        self._conn = conn
        return {
            source: int(position)
            for source, position in conn.execute("SELECT source, position FROM pachytype_positions")
            if source in self.positions
        }

    def _apply(self, batch: list[tuple[str, StoredEvent[Any]]]) -> None:
        conn = self._c()
        write = self._write
        last: dict[str, int] = {}
        conn.execute("BEGIN IMMEDIATE")
        try:
            for source, item in batch:
                write(conn, item)
                last[source] = item.position
            conn.executemany(
                "INSERT OR REPLACE INTO pachytype_positions VALUES (?, ?)", list(last.items())
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def query(self, sql: str, parameters: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query over the view's tables."""
        conn = self._c()
        if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
            raise PachytypeError(
                f"projection {str(self.path)!r}: query() reads the view; {sql.split()[0]!r} "
                f"would change it behind its positions: write in `apply`"
            )
        return conn.execute(sql, parameters).fetchall()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
