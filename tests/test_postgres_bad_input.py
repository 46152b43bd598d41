"""Bad input on PostgreSQL: a stored row that does not decode gives a clear
error and stays exactly as it was; a malformed message from outside is
refused at `send` and nothing is written."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest

from pachytype import Postgres
from pachytype._codec import Codec
from pachytype._errors import DecodeError, EncodeError
from pachytype._pg_batch import new_message_id
from pachytype._pg_partition import partition_of
from pachytype._pg_testing import drop_schemas, new_schema_name, postgres_test_dsn, require_postgres
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
    ) as eco:
        yield eco
    drop_schemas(dsn, [name])


async def _conn(eco: Postgres) -> asyncpg.Connection:
    return await asyncpg.connect(postgres_test_dsn())


def _id_text(id: str) -> str:
    return Codec(REGISTRY).encode_id("tally", id)


async def test_a_corrupt_mailbox_row_stays_and_blocks_only_its_entity(
    eco: Postgres, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await _conn(eco)
    try:
        bad = _id_text("bad")
        await conn.execute(
            f'INSERT INTO "{eco.schema}".mailbox (msg_id, partition, entity_type, entity_id, '
            f"payload, outside) VALUES ($1, $2, 'tally', $3, $4, true)",
            new_message_id(),
            partition_of("tally", bad, PARTITIONS),
            bad,
            b"\xff\x00 not json",
        )
        with caplog.at_level(logging.ERROR, logger="pachytype.postgres"):
            await eco.send(refs.tally(TallyId("bad")).add(n=1))
            assert await eco.call(refs.tally(TallyId("good")).add(n=1)) == 1
            for _ in range(100):
                if eco.blocked():
                    break
                await asyncio.sleep(0.02)
        ((key, error),) = eco.blocked().items()
        assert key == ("tally", bad)
        assert isinstance(error, DecodeError)
        assert str(error).startswith("cannot decode the message of entity 'tally' (id 'bad')")
        assert str(error) in caplog.text
        rows = await conn.fetch(
            f'SELECT payload FROM "{eco.schema}".mailbox WHERE entity_id = $1 ORDER BY seq', bad
        )
        assert rows[0]["payload"] == b"\xff\x00 not json"
        assert len(rows) == 2  # the later, valid message waits behind it (order kept)
        assert await eco.state(refs.tally(TallyId("bad"))) == 0
        # Someone repairs the row: the entity is tried again and catches up, in order.
        await conn.execute(
            f'UPDATE "{eco.schema}".mailbox SET payload = $1 WHERE payload = $2',
            Codec(REGISTRY).encode_message("tally", Add(n=10)),
            b"\xff\x00 not json",
        )
        assert eco.node is not None
        eco.node.retry_blocked = 0.05
        await asyncio.sleep(0.1)
        await eco.send(refs.tally(TallyId("good")).add(n=1))  # wake the worker
        assert await eco.call(refs.tally(TallyId("bad")).add(n=100)) == 111
        assert eco.blocked() == {}
    finally:
        await conn.close()


async def test_a_corrupt_state_row_is_a_clear_error_and_is_not_overwritten(
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
        await eco.send(refs.tally(TallyId("rot")).add(n=1))
        for _ in range(100):
            if eco.blocked():
                break
            await asyncio.sleep(0.02)
        assert str(eco.blocked()[("tally", rot)]) == str(info.value)
        stored = await conn.fetchval(
            f'SELECT data FROM "{eco.schema}".states WHERE entity_id = $1', rot
        )
        assert await conn.fetchval(f'SELECT count(*) FROM "{eco.schema}".mailbox') == 1
        assert stored == b"{broken"
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
