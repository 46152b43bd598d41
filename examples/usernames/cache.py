"""A per-process cache of taken names, fed by the shards' events.

Design note. Writes go to the shards (one decides per name); reads of "is
this name taken?" should not: a node answering sign-up forms would hammer
the shards and wait on them. Every process instead follows
`eco.events_of(Shard)` into its own read model: a `NameClaimed` adds the
name, a `NameReleased` removes it. The answer lags the shards by about one
commit (the cache is a hint, the shard still decides), and it never blocks
a write.

`taken_names(eco)` keeps the view in memory (rebuilt from position 0 at
each start); `taken_names(eco, path=...)` keeps it in a local SQLite file
with its position, so a restarted process catches up from where it
stopped instead of replaying every claim ever made.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, assert_never

from examples.usernames.shard import NameClaimed, NameReleased, Shard
from pachytype import Ecosystem, Projection, SqliteProjection, StoredEvent

SCHEMA = "CREATE TABLE IF NOT EXISTS taken (name TEXT PRIMARY KEY, user TEXT NOT NULL)"


class NameCache:
    """Answers `taken(name)` from this process's copy of the shards' events."""

    def __init__(self, eco: Ecosystem, path: str | Path | None = None) -> None:
        self.projection: Projection[frozenset[str]] | SqliteProjection
        if path is None:
            self.projection = Projection(eco, Shard, apply=_fold, initial=frozenset())
        else:
            self.projection = SqliteProjection(eco, Shard, path=path, schema=SCHEMA, apply=_write)

    async def __aenter__(self) -> NameCache:
        await self.projection.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.projection.close()

    def taken(self, name: str) -> bool:
        """Whether `name` is taken, as far as this process has seen."""
        projection = self.projection
        if isinstance(projection, Projection):
            return name in projection.view
        return bool(projection.query("SELECT 1 FROM taken WHERE name = ?", (name,)))

    @property
    def position(self) -> int:
        """The position in the shards' event stream this cache has reached."""
        return self.projection.positions[Shard.entity_type]


def _fold(view: frozenset[str], stored: StoredEvent[Any]) -> frozenset[str]:
    event = stored.event
    match event:
        case NameClaimed(name=name):
            return view | {name}
        case NameReleased(name=name):
            return view - {name}
        case _:
            assert_never(event)


def _write(conn: sqlite3.Connection, stored: StoredEvent[Any]) -> None:
    event = stored.event
    match event:
        case NameClaimed(name=name, user=user):
            conn.execute("INSERT OR REPLACE INTO taken VALUES (?, ?)", (name, user))
        case NameReleased(name=name):
            conn.execute("DELETE FROM taken WHERE name = ?", (name,))
        case _:
            assert_never(event)
