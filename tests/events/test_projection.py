"""Read models: `Projection` (in memory) and `SqliteProjection` (a local file that
resumes from its positions), on every ecosystem; and the usernames example's
per-process cache of taken names."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from examples.usernames import refs as names
from examples.usernames.cache import NameCache
from examples.usernames.signup import UserId
from pachytype import (
    LocalDisk,
    PachytypeError,
    Projection,
    ProjectionError,
    SqliteProjection,
    StoredEvent,
)
from pachytype.testing import EcosystemFactory
from tests.events_pkg import refs
from tests.events_pkg.cart import Added, Cart, CartId, Removed
from tests.events_pkg.refs import REGISTRY


def cart(name: str) -> refs.CartRef:
    return refs.cart(CartId(name))


def count_items(view: dict[str, int], stored: StoredEvent[Any]) -> dict[str, int]:
    """How many carts hold each item."""
    event = stored.event
    if isinstance(event, Added):
        return {**view, event.item: view.get(event.item, 0) + 1}
    if isinstance(event, Removed):
        return {**view, event.item: view[event.item] - 1}
    return view


async def test_a_projection_in_memory_follows_every_event(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        await eco.call(cart("a").add(item="tea"))  # before the projection starts
        empty: dict[str, int] = {}
        async with Projection(eco, Cart, apply=count_items, initial=empty) as view:
            await eco.send(cart("b").add(item="tea"), cart("a").add(item="jam"))
            await eco.send(cart("a").remove(item="tea"))
            await view.wait_until(lambda p: p.applied == 4, timeout=10)
            assert view.view == {"tea": 1, "jam": 1}
            assert view.positions["cart"] == max(
                e.position for e in [s async for s in _first(eco.events_of(Cart), 4)]
            )


async def _first(stream: Any, count: int) -> Any:
    n = 0
    async for item in stream:
        yield item
        n += 1
        if n == count:
            return


def record(conn: sqlite3.Connection, stored: StoredEvent[Any]) -> None:
    event = stored.event
    if isinstance(event, Added):
        conn.execute(
            "INSERT INTO added VALUES (?, ?, ?)", (stored.position, str(stored.ref.id), event.item)
        )


SCHEMA = "CREATE TABLE IF NOT EXISTS added (position INTEGER PRIMARY KEY, cart TEXT, item TEXT)"


async def test_a_sqlite_projection_resumes_from_its_position_after_a_restart(
    tmp_path: Path,
) -> None:
    db, view_db = tmp_path / "eco.db", tmp_path / "view.db"
    async with LocalDisk(db, REGISTRY) as eco:
        async with SqliteProjection(eco, Cart, path=view_db, schema=SCHEMA, apply=record) as view:
            for i in range(10):
                await eco.call(cart(f"c{i % 3}").add(item=str(i)))
            await view.wait_until(lambda p: p.applied == 10, timeout=10)
            stopped_at = view.positions["cart"]
        # While the projection is down, more events are written.
        for i in range(10, 15):
            await eco.call(cart(f"c{i % 3}").add(item=str(i)))
    async with (
        LocalDisk(db, REGISTRY) as eco,
        SqliteProjection(eco, Cart, path=view_db, schema=SCHEMA, apply=record) as view,
    ):
        assert view.positions["cart"] == stopped_at  # read back from its file
        await view.wait_until(lambda p: p.applied == 5, timeout=10)
        rows = view.query("SELECT item FROM added ORDER BY position")
        assert [int(r[0]) for r in rows] == list(range(15))  # each once, none replayed
        assert view.applied == 5
        with pytest.raises(PachytypeError, match="query\\(\\) reads the view"):
            view.query("DELETE FROM added")


async def test_a_failing_apply_stops_the_projection_without_moving_its_position(
    tmp_path: Path,
) -> None:
    def refuse_jam(conn: sqlite3.Connection, stored: StoredEvent[Any]) -> None:
        if isinstance(stored.event, Added) and stored.event.item == "jam":
            raise ValueError("no jam here")
        record(conn, stored)

    async with LocalDisk(tmp_path / "eco.db", REGISTRY) as eco:
        await eco.call(cart("x").add(item="tea"))
        view = SqliteProjection(eco, Cart, path=tmp_path / "v.db", schema=SCHEMA, apply=refuse_jam)
        async with view:
            await view.wait_until(lambda p: p.applied == 1, timeout=10)
            position = view.positions["cart"]
            await eco.call(cart("x").add(item="jam"))
            with pytest.raises(ProjectionError) as info:
                await view.wait_until(lambda p: p.applied == 2, timeout=10)
            assert "no jam here" in str(info.value)
            assert view.positions["cart"] == position
            assert view.query("SELECT count(*) FROM added") == [(1,)]


# -- the usernames cache ----------------------------------------------------------------


async def test_the_name_cache_answers_from_the_stream(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(names.REGISTRY) as eco, NameCache(eco) as cache:
        await eco.send(names.signup(UserId("ann")).choose(name="neo"))
        await cache.projection.wait_until(lambda _: cache.taken("neo"), timeout=10)
        assert not cache.taken("trinity")
        await eco.send(names.signup(UserId("ann")).choose(name="trinity"))  # releases neo
        await cache.projection.wait_until(lambda _: not cache.taken("neo"), timeout=10)
        assert cache.taken("trinity")


async def test_a_restarted_cache_catches_up_without_replaying_from_zero(tmp_path: Path) -> None:
    db, cache_db = tmp_path / "names.db", tmp_path / "cache.db"
    users = [UserId(f"u{i}") for i in range(40)]
    async with LocalDisk(db, names.REGISTRY) as eco:
        async with NameCache(eco, cache_db) as cache:
            await eco.send(*(names.signup(u).choose(name=f"name-{u}") for u in users[:30]))
            await cache.projection.wait_until(
                lambda _: all(cache.taken(f"name-{u}") for u in users[:30]), timeout=30
            )
            first_run = cache.projection.applied
        # The cache's process is down while these are claimed.
        await eco.send(*(names.signup(u).choose(name=f"name-{u}") for u in users[30:]))
        await eco.settle()
    async with LocalDisk(db, names.REGISTRY) as eco, NameCache(eco, cache_db) as cache:
        await cache.projection.wait_until(
            lambda _: all(cache.taken(f"name-{u}") for u in users), timeout=30
        )
        assert first_run == 30
        assert cache.projection.applied == 10  # only what it missed
        assert not cache.taken("name-nobody")
