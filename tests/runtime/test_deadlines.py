"""Deadlines: `call`, `ask` and `state` take `timeout=`; when it passes the
caller gets a `DeadlineError` naming the entity (and, on Postgres, whether
the schema has a live node), and what was sent may still take effect."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from examples.usernames import refs
from examples.usernames.shard import shard_of
from examples.usernames.signup import UserId
from pachytype import DeadlineError, Postgres
from pachytype._postgres.testing import drop_schemas, new_schema_name, require_postgres
from pachytype.testing import EcosystemFactory


async def test_calls_and_reads_within_their_deadline_answer(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(refs.REGISTRY) as eco:
        state = await eco.call(refs.signup(UserId("u")).choose(name="ada"), timeout=5.0)
        assert state.asking == "ada"
        await eco.settle()
        assert (await eco.state(refs.signup(UserId("u")), timeout=5.0)).name == "ada"


async def test_timeouts_must_be_positive(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(refs.REGISTRY) as eco:
        with pytest.raises(ValueError, match="timeout must be a positive number"):
            await eco.call(refs.signup(UserId("u")).drop(), timeout=-1.0)
        with pytest.raises(ValueError, match="timeout must be a positive number"):
            await eco.state(refs.signup(UserId("u")), timeout=0.0)


def test_a_client_without_a_live_node_is_told_so_and_its_call_still_takes_effect() -> None:
    dsn = require_postgres()
    schema = new_schema_name()

    async def scenario() -> None:
        async with Postgres(dsn, refs.REGISTRY, schema=schema, node=False, partitions=4) as eco:
            user = refs.signup(UserId("late"))
            with pytest.raises(DeadlineError) as info:
                await eco.call(user.choose(name="lovelace"), timeout=0.3)
            message = str(info.value)
            assert message.startswith(
                "call (Choose) to entity 'signup' (id 'late') got no answer within 0.3 s; "
                f"Postgres schema {schema!r} has no live node"
            )
            assert "may still be handled later" in message
            with pytest.raises(DeadlineError, match="has no live node"):
                await eco.ask(
                    lambda r: refs.shard(shard_of("x")).claim(
                        name="x", user=UserId("y"), reply_to=r
                    ),
                    timeout=0.3,
                )
            # A node arrives: the timed-out call's message is handled after all.
            async with Postgres(
                dsn, refs.REGISTRY, schema=schema, lease=timedelta(seconds=2), poll_interval=0.1
            ) as node:
                async for state in node.follow(user):
                    if state.name == "lovelace":
                        break

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        drop_schemas(dsn, [schema])
