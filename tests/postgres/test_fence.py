"""The fence of a Postgres commit (`_postgres/commit.py`) checks the owned
partitions the batch touches: a commit is refused, writing nothing, when one
of them moved to another owner, and goes through when only partitions it
does not touch moved (as the `Store` contract says); a batch with parts
whose partitions are not at hand is checked against every owned partition."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest

from pachytype._clock import SystemClock
from pachytype._postgres.commit import _fenced
from pachytype._postgres.lease import Ownership
from pachytype._postgres.partition import partition_of
from pachytype._postgres.schema import migrate
from pachytype._postgres.store import PostgresStore
from pachytype._store import CommitBatch, DeadRow, FencedError

PARTITIONS = 4
NODE = "n1"


def _in(partition: int) -> str:
    """An id text of a `Tally` in `partition`."""
    return next(
        f"t{i}" for i in range(1000) if partition_of("Tally", f"t{i}", PARTITIONS) == partition
    )


def _state(partition: int, data: bytes) -> CommitBatch:
    return CommitBatch(entities=[("Tally", _in(partition), data, 1, 0, None)])


@pytest.fixture
async def store(schema: tuple[str, str]) -> AsyncIterator[tuple[PostgresStore, asyncpg.Connection]]:
    """A store of node `NODE` owning every partition at epoch 1, and a connection."""
    dsn, name = schema
    conn = await asyncpg.connect(dsn)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=3)
    try:
        await migrate(conn, name, PARTITIONS)
        await conn.execute(
            f'UPDATE "{name}".leases SET owner = $1, epoch = 1, '
            f"expires_at = now() + interval '1 hour'",
            NODE,
        )
        ownership = Ownership(epochs=dict.fromkeys(range(PARTITIONS), 1))
        s = PostgresStore(
            pool,
            name,
            PARTITIONS,
            NODE,
            ownership,
            lambda _p: True,
            lambda _i: False,
            lambda _i, _a: None,
            SystemClock(),
        )
        await s.open("fingerprint", lambda: None)
        yield s, conn
        await s.close()
    finally:
        await pool.close()
        await conn.close()


async def _stored(conn: asyncpg.Connection, schema: str, partition: int) -> bytes | None:
    data: bytes | None = await conn.fetchval(
        f'SELECT data FROM "{schema}".states WHERE entity_type = $1 AND entity_id = $2',
        "Tally",
        _in(partition),
    )
    return data


async def _taken(conn: asyncpg.Connection, schema: str, partition: int) -> None:
    """What a takeover of `partition` by another node does: new owner, new epoch."""
    await conn.execute(
        f"UPDATE \"{schema}\".leases SET owner = 'thief', epoch = epoch + 1 WHERE partition = $1",
        partition,
    )


async def test_a_commit_goes_through_when_only_partitions_it_does_not_touch_moved(
    store: tuple[PostgresStore, asyncpg.Connection], schema: tuple[str, str]
) -> None:
    s, conn = store
    name = schema[1]
    await _taken(conn, name, 1)
    await s.commit(_state(0, b"zero"))
    assert await _stored(conn, name, 0) == b"zero"
    with pytest.raises(FencedError) as refused:
        await s.commit(_state(1, b"one"))
    assert refused.value.scopes == {1}
    assert await _stored(conn, name, 1) is None


async def test_a_batch_with_a_dead_letter_is_checked_against_every_owned_partition(
    store: tuple[PostgresStore, asyncpg.Connection], schema: tuple[str, str]
) -> None:
    s, conn = store
    name = schema[1]
    await _taken(conn, name, 1)
    batch = _state(0, b"zero")
    batch.dead.append(DeadRow("Tally", _in(0), b"m", "ValueError", "bad", "", None, 1, (), 0.0))
    with pytest.raises(FencedError) as refused:
        await s.commit(batch)
    assert refused.value.scopes == set(range(PARTITIONS))
    assert await _stored(conn, name, 0) is None
    assert await conn.fetchval(f'SELECT count(*) FROM "{name}".dead_letters') == 0


def test_the_fence_holds_the_partitions_a_batch_touches() -> None:
    owned = dict.fromkeys(range(8), 1)

    def scope(_t: str, e: str) -> int:
        return int(e)

    states = [("Tally", "3", 3, 1, b"s", 1, None)]
    batch = CommitBatch(
        entities=[("Tally", "3", b"s", 1, 0, None), ("Tally", "6", None, 1, 0, None)]
    )
    # Consumed rows, states, new mail in owned partitions, entities without a new state.
    assert _fenced(batch, owned, [1, 1], states, [(9, 5)], [], [], scope) == [1, 3, 5, 6]
    # Nothing touched, or a partition not owned: every owned one.
    assert _fenced(CommitBatch(), owned, [], [], [], [], [], scope) == list(range(8))
    assert _fenced(batch, owned, [11], states, [], [], [], scope) == list(range(8))
    # Parts whose partitions are not at hand: every owned one.
    assert _fenced(batch, owned, [1], states, [], [("Tally", "9", "k")], [], scope) == list(
        range(8)
    )
    assert _fenced(batch, owned, [1], states, [], [], [7], scope) == list(range(8))
