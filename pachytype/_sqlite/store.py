"""`SqliteStore`: LocalDisk's `Store` over one SQLite file (the rules are in
`pachytype._sqlite`)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from pachytype._errors import PachytypeError
from pachytype._sqlite.lock import FileLock
from pachytype._sqlite.rows import (
    mark_closed,
    read_dead,
    read_events,
    read_journals,
    read_states,
    recover,
    write,
)
from pachytype._sqlite.schema import Synchronous, connect, create_schema
from pachytype._store import (
    CommitBatch,
    DeadRow,
    EntityKey,
    EntityRow,
    Journal,
    LogRow,
    News,
    Recovery,
    StoredState,
)


class SqliteStore:
    """LocalDisk's `Store`: one SQLite file, one connection, used on the loop thread.

    Calls are synchronous inside the async methods: a group commit of a few
    hundred activations takes a millisecond or two, and a writer thread
    would cost more than it saves (it must retake the GIL for every row,
    behind a busy event loop).
    """

    def __init__(self, path: str | os.PathLike[str], synchronous: Synchronous = "FULL") -> None:
        self.path = Path(path)
        self.synchronous: Synchronous = synchronous
        self._lock = FileLock(self.path, check_wal=synchronous == "FULL")
        self._conn: sqlite3.Connection | None = None

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise PachytypeError(f"the store {str(self.path)!r} is not open")
        return self._conn

    async def open(self, fingerprint: str, wake: Callable[[], None]) -> Recovery:
        # One scope, owned from here to `close`, no other writer: `wake` never rings.
        self._lock.acquire()
        try:
            conn = connect(self.path, self.synchronous)
            try:
                create_schema(conn, fingerprint)
                self._lock.note_wal()
                recovery = recover(conn)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            self._lock.release()
            raise
        self._conn = conn
        return recovery

    def scope_of(self, entity_type: str, id_text: str) -> int:
        return 0

    overlaps = False
    """A commit runs inline (see above): nothing can happen beside it."""

    def owned(self) -> frozenset[int] | None:
        return None

    def steady(self) -> bool:
        return True

    def followed(self) -> frozenset[EntityKey]:
        return frozenset()

    async def news(self) -> News:
        return News()

    async def leave(self, scopes: frozenset[int], recent: list[EntityRow]) -> None:
        """Never called: the one scope is owned until close."""

    async def commit(self, batch: CommitBatch) -> None:
        # Never fenced (the flock is ours until close); `answers` stays empty
        # (no caller in another process: recovered mail has no `calls`).
        write(self._c(), batch)
        self._lock.check_in_place()  # never acknowledge a commit into deleted files

    async def load_states(self, keys: Sequence[EntityKey]) -> dict[EntityKey, StoredState]:
        return read_states(self._c(), keys)

    async def dead_letters(self) -> list[DeadRow]:
        return read_dead(self._c())

    async def load_journals(self, keys: Sequence[EntityKey]) -> dict[EntityKey, Journal]:
        return read_journals(self._c(), keys)

    async def read_events(
        self, entity_type: str, id_text: str | None, after: int, limit: int
    ) -> list[LogRow]:
        return read_events(self._c(), entity_type, id_text, after, limit)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                # A failing disk must not stop the close: the next open then
                # treats pending mail as suspect, which is only cautious.
                with contextlib.suppress(sqlite3.Error):
                    mark_closed(conn)
                conn.close()
                self._lock.set_aside()  # still holding the lock: no one else opened
        finally:
            self._lock.release()
