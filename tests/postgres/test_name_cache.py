"""The usernames example's per-node cache on PostgreSQL (issue 13 item 4):
two real node processes (`python -m examples.usernames.node`), each with its
own `NameCache` file. Every acknowledged sign-up is visible in both caches;
a node killed with SIGKILL and started again on the same cache file resumes
from its checkpoint (applies only what it missed, nothing twice), while the
writes go on.

How it can fail: a cache that misses an event lacks a name (the caches are
compared with every name written and with the shards' own state); a cache
that replays from zero or applies an event twice reports more applied
events than the positions it moved over.

The figures (writes/s, lag per cache from acknowledged write to visible,
catch-up of the restarted node) are printed; `pytest -s` shows them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest

from examples.usernames import refs as names
from examples.usernames.shard import SHARDS, Shard, ShardId
from examples.usernames.signup import UserId
from pachytype import Postgres
from pachytype._postgres.testing import (
    drop_schemas,
    new_schema_name,
    require_postgres,
    wait_for_owners,
)

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


class CacheNode:
    """One `examples.usernames.node` process and the progress it reported."""

    def __init__(self, dsn: str, schema: str, cache: Path, logs: Path) -> None:
        self.dsn, self.schema, self.cache, self.logs = dsn, schema, cache, logs
        self.proc: asyncio.subprocess.Process | None = None
        self.opened_at = -1  # the position its cache loaded at the last start
        self.position = 0
        self.applied = 0  # since the last start
        self.progress: list[tuple[float, int]] = []  # (monotonic time, position)
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def start(self, node_id: str) -> None:
        """Start the process; return once its cache is open."""
        self.opened_at, self.applied = -1, 0
        with (self.logs / f"{node_id}.log").open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "examples.usernames.node",
                self.schema,
                str(self.cache),
                node_id,
                env={**os.environ, "PACHYTYPE_DSN": self.dsn},
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        self._reader = asyncio.ensure_future(self._read(self.proc))
        await self.until(lambda: self.opened_at >= 0, f"{node_id} to open its cache")

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            words = line.decode().split()
            async with self._changed:
                if words[0] == "open":
                    self.opened_at = self.position = int(words[1])
                else:
                    self.applied, self.position = int(words[1]), int(words[2])
                    self.progress.append((float(words[3]), self.position))
                self._changed.notify_all()

    async def until(self, predicate: object, what: str, timeout: float = 60) -> None:
        assert callable(predicate)
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(predicate)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; see {self.logs}") from None

    async def reached(self, position: int) -> None:
        await self.until(lambda: self.position >= position, f"position {position}")

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        assert self._reader is not None
        await self._reader

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    def visible_at(self, position: int) -> float:
        """When this cache first reported having reached `position`."""
        return next(t for t, p in self.progress if p >= position)

    def names(self) -> set[str]:
        """The names in its cache file, read as any reader of the file would."""
        with sqlite3.connect(f"file:{self.cache}?mode=ro", uri=True) as conn:
            return {r[0] for r in conn.execute("SELECT name FROM taken")}


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[str, str, CacheNode, CacheNode]]:
    dsn, schema = require_postgres(), new_schema_name("pt_cache")
    a = CacheNode(dsn, schema, tmp_path / "a.db", tmp_path)
    b = CacheNode(dsn, schema, tmp_path / "b.db", tmp_path)
    try:
        await a.start("a")  # creates the schema
        await b.start("b")
        yield dsn, schema, a, b
    finally:
        await a.stop()
        await b.stop()
        drop_schemas(dsn, [schema])


async def test_every_write_reaches_both_caches_and_a_killed_node_catches_up(
    cluster: tuple[str, str, CacheNode, CacheNode],
) -> None:
    dsn, schema, a, b = cluster
    conn = await asyncpg.connect(dsn)
    try:
        await wait_for_owners(conn, schema, {"a", "b"}, timeout=30)
    finally:
        await conn.close()
    acked: dict[str, float] = {}
    async with Postgres(dsn, names.REGISTRY, schema=schema, node=False) as client:

        async def write(first: int, count: int) -> float:
            """Sign up `count` users, each claiming its own name; writes/s."""
            started = time.monotonic()
            for i in range(first, first + count):
                name = f"name{i}"
                await client.send(names.signup(UserId(f"u{i}")).choose(name=name))
                acked[name] = time.monotonic()
            return count / (time.monotonic() - started)

        # 1. Both nodes up.
        rate = await write(0, 150)
        await a.reached(150)
        await b.reached(150)
        # 2. b is killed; the writes go on (a takes b's shards over after b's lease).
        await b.kill()
        checkpoint = b.position
        await write(150, 100)
        # 3. b comes back on the same file; it catches up while more writes arrive.
        restarted = time.monotonic()
        await b.start("b-again")
        more = asyncio.ensure_future(write(250, 100))
        await b.reached(250)
        caught_up = time.monotonic() - restarted
        applied_to_catch_up = b.applied
        await more
        await a.reached(350)
        await b.reached(350)
        positions = {s.event.name: s.position async for s in _first(client.events_of(Shard), 350)}
        owners = set()
        for number in range(SHARDS):
            owners |= set((await client.state(names.shard(ShardId(number)))).owners)

    everything = {f"name{i}" for i in range(350)}
    assert owners == everything  # the shards granted each name once
    assert sorted(positions.values()) == list(range(1, 351))
    assert a.names() == everything
    assert b.names() == everything
    # b resumed from its file: at least where it was when killed, not zero...
    assert b.opened_at >= checkpoint >= 150
    # ...and applied each later event once: nothing replayed, nothing twice.
    assert b.applied == 350 - b.opened_at

    def lags(node: CacheNode, of: range) -> list[float]:
        return [(node.visible_at(positions[f"name{i}"]) - acked[f"name{i}"]) * 1000 for i in of]

    steady = {n: lags(c, range(150)) for n, c in (("a", a), ("b", b))}
    print(
        f"\nname cache on Postgres, 2 node processes: {rate:.0f} sign-ups/s acknowledged "
        f"(one sequential sender); lag acknowledged -> visible, ms: "
        + ", ".join(
            f"{n} p50 {statistics.median(v):.1f} p99 {_p99(v):.1f}" for n, v in steady.items()
        )
        + f"; b killed at position {checkpoint}, 100 claims while down, restarted: resumed "
        f"at {b.opened_at}, reached 250 in {caught_up * 1000:.0f} ms from its start, having "
        f"applied {applied_to_catch_up} events (not 250: none replayed)"
    )


async def _first(stream: AsyncIterator[T], count: int) -> AsyncIterator[T]:
    n = 0
    async for item in stream:
        yield item
        n += 1
        if n == count:
            return


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
