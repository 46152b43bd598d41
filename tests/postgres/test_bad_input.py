"""Bad input on PostgreSQL: a stored message that does not decode becomes a
dead letter (raw bytes kept) and its entity carries on; a stored state that
does not decode holds its entity (clear error, row untouched, mail waiting in
order); a malformed message from outside is refused at `send`, nothing written."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest

from pachytype import Postgres
from pachytype._codec import Codec
from pachytype._errors import DecodeError, EncodeError
from pachytype._postgres.client import new_message_id
from pachytype._postgres.partition import partition_of
from pachytype._postgres.store import PostgresStore
from pachytype._postgres.testing import (
    drop_schemas,
    new_schema_name,
    postgres_test_dsn,
    require_postgres,
)
from pachytype._store import CommitBatch
from tests.conformance import refs
from tests.conformance.entities import Add, Append, TallyId
from tests.conformance.refs import REGISTRY

PARTITIONS = 8


@pytest.fixture
async def eco() -> AsyncIterator[Postgres]:
    dsn = require_postgres()
    name = new_schema_name()
    async with Postgres(
        dsn,
        REGISTRY,
        schema=name,
        partitions=PARTITIONS,
        lease=timedelta(seconds=2),
        poll_interval=0.1,
        retry_held=0.1,
    ) as eco:
        yield eco
    drop_schemas(dsn, [name])


async def _conn(eco: Postgres) -> asyncpg.Connection:
    return await asyncpg.connect(postgres_test_dsn())


def _id_text(id: str) -> str:
    return Codec(REGISTRY).encode_id("tally", id)


async def _insert_raw(
    conn: asyncpg.Connection, schema: str, entity_type: str, id_text: str, payload: bytes
) -> None:
    """A mailbox row written behind the library's back (no checks, no NOTIFY)."""
    await conn.execute(
        f'INSERT INTO "{schema}".mailbox (msg_id, partition, entity_type, entity_id, '
        f"payload, outside) VALUES ($1, $2, $3, $4, $5, true)",
        new_message_id(),
        partition_of(entity_type, id_text, PARTITIONS),
        entity_type,
        id_text,
        payload,
    )


async def test_a_corrupt_mailbox_row_becomes_a_dead_letter_and_its_entity_carries_on(
    eco: Postgres, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await _conn(eco)
    try:
        bad = _id_text("bad")
        await _insert_raw(conn, eco.schema, "tally", bad, b"\xff\x00 not json")
        await _insert_raw(conn, eco.schema, "ghost", '"g"', b'["Boo",{}]')
        with caplog.at_level(logging.ERROR, logger="pachytype.postgres"):
            await eco.send(refs.tally(TallyId("bad")).add(n=1))
            assert await eco.call(refs.tally(TallyId("bad")).add(n=10)) == 11
            await eco.settle()
        assert eco.blocked() == {}
        assert await conn.fetchval(f'SELECT count(*) FROM "{eco.schema}".mailbox') == 0
        # Two partitions, two workers: the two letters may be written in either order.
        dead = sorted(await eco.dead_letters(), key=lambda d: d.to.entity_type, reverse=True)
        assert [(d.to.entity_type, d.error_type, d.message) for d in dead] == [
            ("tally", "DecodeError", b"\xff\x00 not json"),
            ("ghost", "UnknownEntityError", b'["Boo",{}]'),
        ]
        (letter, ghost) = dead
        assert letter.to == refs.tally(TallyId("bad"))
        assert letter.error.startswith("cannot decode the message of entity 'tally' (id 'bad')")
        assert "keep old messages decodable" in letter.error  # what to do
        assert letter.recent == (b"\xff\x00 not json",)  # raw bytes: nothing lost
        assert letter.state == 0  # the state it met in its turn, as for any failed message
        assert "DecodeError" in letter.traceback
        assert "'ghost'" in ghost.error
        assert letter.error in caplog.text
        assert await eco.state(refs.tally(TallyId("bad"))) == 11
    finally:
        await conn.close()


async def test_a_corrupt_state_row_holds_its_entity_and_its_mail_waits_in_order(
    eco: Postgres,
) -> None:
    conn = await _conn(eco)
    try:
        rot = _id_text("rot")
        await conn.execute(
            f'INSERT INTO "{eco.schema}".states (entity_type, entity_id, partition, version, '
            f"data, activations) VALUES ('tally', $1, $2, 1, $3, 4)",
            rot,
            partition_of("tally", rot, PARTITIONS),
            b"{broken",
        )
        with pytest.raises(DecodeError) as info:
            await eco.state(refs.tally(TallyId("rot")))
        assert str(info.value).startswith("cannot decode the state of entity 'tally' (id 'rot')")
        await eco.send(refs.tally(TallyId("rot")).add(n=1), refs.tally(TallyId("rot")).add(n=2))
        for _ in range(100):
            if eco.blocked():
                break
            await asyncio.sleep(0.02)
        assert str(eco.blocked()[("tally", rot)]) == str(info.value)
        assert await eco.call(refs.tally(TallyId("other")).add(n=1)) == 1  # others run
        stored = await conn.fetchval(
            f'SELECT data FROM "{eco.schema}".states WHERE entity_id = $1', rot
        )
        assert stored == b"{broken"
        waiting = await conn.fetch(
            f'SELECT payload FROM "{eco.schema}".mailbox WHERE entity_id = $1 ORDER BY seq', rot
        )
        codec = Codec(REGISTRY)
        assert [r["payload"] for r in waiting] == [
            codec.encode_message("tally", Add(n=1)),
            codec.encode_message("tally", Add(n=2)),
        ]
        assert await eco.dead_letters() == []
        # Someone repairs the state: the entity is tried again and catches up, in order.
        await conn.execute(
            f'UPDATE "{eco.schema}".states SET data = $1 WHERE entity_id = $2',
            codec.encode_state("tally", 5),
            rot,
        )
        for _ in range(100):  # tried again every `retry_held` seconds
            if not eco.blocked():
                break
            await asyncio.sleep(0.02)
        assert await eco.call(refs.tally(TallyId("rot")).add(n=100)) == 108
        assert eco.blocked() == {}
    finally:
        await conn.close()


async def test_a_message_that_cannot_be_encoded_is_refused_at_send(eco: Postgres) -> None:
    conn = await _conn(eco)
    try:
        bad = refs.log(5).post(Append(value=object()))  # type: ignore[arg-type]
        with pytest.raises(EncodeError) as info:
            await eco.send(refs.log(5).append(value=1), bad)
        assert str(info.value).startswith("cannot encode the Append message of entity 'log'")
        assert await conn.fetchval(f'SELECT count(*) FROM "{eco.schema}".mailbox') == 0
    finally:
        await conn.close()


async def test_a_message_whose_commit_keeps_failing_is_isolated_and_dead_lettered_unrun(
    eco: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault injected into every commit of one message's outcome (say a value
    the database refuses): each failed commit makes the reloaded mail
    suspect, its attempts are counted before it runs again, the failing one
    ends up running alone, and after MAX_ATTEMPTS it is dead-lettered
    without running again; everything else commits."""
    real_take, real_commit = PostgresStore._take, PostgresStore._commit
    poison = Codec(REGISTRY).encode_message("tally", Add(13))
    poison_ids: set[int] = set()

    async def take(store: PostgresStore, conn: Any, rows: Any) -> Any:
        poison_ids.update(r[0] for r in rows if r[0] is not None and r[4] == poison)
        return await real_take(store, conn, rows)

    async def failing(store: PostgresStore, batch: CommitBatch) -> None:
        ran = not any(dead.message == poison for dead in batch.dead)  # (not: dead-lettered)
        if poison_ids & set(batch.consumed) and ran:
            raise asyncpg.DataError("injected: the database refuses this batch")
        await real_commit(store, batch)

    monkeypatch.setattr(PostgresStore, "_take", take)
    monkeypatch.setattr(PostgresStore, "_commit", failing)
    others = [refs.tally(TallyId(f"o{i}")).add(n=1) for i in range(40)]
    await eco.send(*others[:20], refs.tally(TallyId("p")).add(n=13), *others[20:])
    await eco.send(refs.tally(TallyId("p")).add(n=1))  # the entity goes on after it
    await asyncio.wait_for(eco.settle(), 60)
    assert [await eco.state(refs.tally(TallyId(f"o{i}"))) for i in range(40)] == [1] * 40
    assert await eco.state(refs.tally(TallyId("p"))) == 1
    (dead,) = await eco.dead_letters()
    assert dead.message == Add(13) and dead.to == refs.tally(TallyId("p"))
    assert dead.error_type == "PoisonMessageError"
    assert dead.error.startswith(
        "a message to entity 'tally' (id 'p') was being handled 3 times when its process "
        "died or its commit failed"
    )
