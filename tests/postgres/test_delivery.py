"""Delivery on PostgreSQL: a resent outside message is applied once, mail
(delayed or not, calls included) waits in the database for a node, a call
lost with the server is sent again, a forged answer resolves nothing, and a
dead letter keeps its entity's recent messages across restarts."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import timedelta

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import orjson
import pytest

from pachytype import ActivationError, Postgres
from tests.conformance import refs
from tests.conformance.entities import Add, Fail, TallyId
from tests.conformance.refs import REGISTRY


def open_eco(dsn: str, schema: str, *, node: bool = True) -> Postgres:
    return Postgres(
        dsn,
        REGISTRY,
        schema=schema,
        node=node,
        partitions=8,
        lease=timedelta(seconds=2),
        poll_interval=0.1,
    )


async def test_a_resent_outside_message_is_applied_once(schema: tuple[str, str]) -> None:
    dsn, name = schema
    async with open_eco(dsn, name) as eco:
        row = eco._client.encode(refs.tally(TallyId("once")).add(n=5))
        await eco._client.insert([row])
        await eco.settle()
        await eco._client.insert([row])  # same message id: a resend after a lost ack
        await eco._client.insert([row, row])
        await eco.settle()
        assert await eco.state(refs.tally(TallyId("once"))) == 5


async def test_mail_and_calls_wait_in_the_database_until_a_node_runs(
    schema: tuple[str, str],
) -> None:
    dsn, name = schema
    async with open_eco(dsn, name, node=False) as client:
        await client.send(refs.tally(TallyId("w")).add(n=1))
        await client.send(refs.log(1).append(value=7).after(timedelta(milliseconds=300)))
        call = asyncio.create_task(client.call(refs.tally(TallyId("w")).add(n=2)))
        await asyncio.sleep(0.3)
        assert not call.done()
        started = time.monotonic()
        async with open_eco(dsn, name):
            assert await asyncio.wait_for(call, 10) == 3
            async for log in client.follow(refs.log(1)):
                if log:
                    assert log == (7,)
                    break
        assert time.monotonic() - started < 5


async def test_a_delayed_message_survives_the_node_that_scheduled_it(
    schema: tuple[str, str],
) -> None:
    dsn, name = schema
    async with open_eco(dsn, name) as eco:
        await eco.call(refs.emitter("r").remind(to=refs.log(2), value=9, delay_ms=400))
    await asyncio.sleep(0.5)  # due while no node runs
    async with open_eco(dsn, name) as eco:
        async for log in eco.follow(refs.log(2)):
            if log:
                assert log == (9,)
                break


async def test_a_dead_letter_keeps_the_messages_before_a_restart_and_a_takeover(
    schema: tuple[str, str],
) -> None:
    dsn, name = schema
    tally = refs.tally(TallyId("kept"))
    async with open_eco(dsn, name) as first:
        for n in (1, 2, 3):
            await first.call(tally.add(n=n))
        with pytest.raises(ActivationError):  # a failure: recorded with its context too
            await first.call(tally.fail(reason="one"))
    async with open_eco(dsn, name) as second:  # a new node: its memory starts empty
        with pytest.raises(ActivationError):
            await second.call(tally.fail(reason="two"))
        letters = await second.dead_letters()
        assert [d.message for d in letters] == [Fail("one"), Fail("two")]
        assert letters[1].recent == (Add(1), Add(2), Add(3), Fail("one"), Fail("two"))
        assert letters[1].state == 6


async def _waiting_call_row(conn: asyncpg.Connection, schema: str) -> asyncpg.Record:
    """The mailbox row of a call, once it is committed."""
    while True:
        row = await conn.fetchrow(
            f'SELECT msg_id, reply_to FROM "{schema}".mailbox WHERE reply_to IS NOT NULL'
        )
        if row is not None:
            return row
        await asyncio.sleep(0.01)


async def test_a_call_whose_message_was_lost_with_the_server_is_sent_again(
    schema: tuple[str, str],
) -> None:
    # A call's INSERT does not wait for its own flush (the owner's flushed
    # commit covers it): if the server loses it, the caller must send it again.
    dsn, name = schema
    conn = await asyncpg.connect(dsn)
    try:
        async with open_eco(dsn, name, node=False) as client:
            call = asyncio.create_task(client.call(refs.tally(TallyId("lost")).add(n=4)))
            row = await _waiting_call_row(conn, name)
            await conn.execute(f'DELETE FROM "{name}".mailbox WHERE msg_id = $1', row["msg_id"])
            async with open_eco(dsn, name):
                assert await asyncio.wait_for(call, 10) == 4
                await client.settle()
                assert await client.state(refs.tally(TallyId("lost"))) == 4  # once
    finally:
        await conn.close()


async def test_a_forged_answer_never_resolves_a_call(schema: tuple[str, str]) -> None:
    # Anyone who can connect may LISTEN (and learn a call's id) and NOTIFY:
    # an answer not sealed with the caller's key is dropped.
    dsn, name = schema
    conn = await asyncpg.connect(dsn)
    try:
        async with open_eco(dsn, name, node=False) as client:
            call = asyncio.create_task(client.call(refs.tally(TallyId("f")).add(n=1)))
            row = await _waiting_call_row(conn, name)
            forged = orjson.dumps([[row["msg_id"].hex, 1, base64.b64encode(b"999").decode()]])
            for tag in ("0" * 32, "f" * 32):
                await conn.execute(
                    "SELECT pg_notify($1, $2)", row["reply_to"], tag + forged.decode()
                )
            await conn.execute("SELECT pg_sleep(0.3)")  # delivered meanwhile, if at all
            assert not call.done()
            async with open_eco(dsn, name):
                assert await asyncio.wait_for(call, 10) == 1
    finally:
        await conn.close()
