"""`eco.ask`: send a request carrying a fresh reply address, get the one
message sent there, typed by the reply address the message declares. On
every ecosystem, and from a `node=False` Postgres client in another process
than the node that answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from examples.usernames import refs
from examples.usernames.shard import ShardId, shard_of
from examples.usernames.signup import Claimed, Taken, UserId
from pachytype import DeadlineError, Postgres
from pachytype._postgres.testing import (
    drop_schemas,
    new_schema_name,
    require_postgres,
    spawn_node,
    stop_processes,
)
from pachytype.testing import EcosystemFactory


async def test_ask_returns_the_answer_sent_to_the_reply_address(
    ecosystem: EcosystemFactory,
) -> None:
    async with ecosystem(refs.REGISTRY) as eco:
        shard = refs.shard(shard_of("ada"))
        first = await eco.ask(
            lambda r: shard.claim(name="ada", user=UserId("u1"), reply_to=r), timeout=5.0
        )
        second = await eco.ask(
            lambda r: shard.claim(name="ada", user=UserId("u2"), reply_to=r), timeout=5.0
        )
        assert first == Claimed("ada")
        assert second == Taken("ada")
        assert (await eco.state(shard)).owners == {"ada": "u1"}


async def test_concurrent_asks_each_get_their_own_answer(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(refs.REGISTRY) as eco:
        names = [f"name{i}" for i in range(20)]

        async def claim(name: str) -> Claimed | Taken:
            shard = refs.shard(shard_of(name))
            return await eco.ask(
                lambda r: shard.claim(name=name, user=UserId(f"user-{name}"), reply_to=r),
                timeout=10.0,
            )

        answers = await asyncio.gather(*(claim(n) for n in names))
        assert answers == [Claimed(n) for n in names]


async def test_an_ask_whose_target_raises_gets_no_answer_and_times_out(
    ecosystem: EcosystemFactory,
) -> None:
    async with ecosystem(refs.REGISTRY) as eco:
        wrong = ShardId((shard_of("ada") + 1) % 8)  # a shard refuses a name it does not own
        with pytest.raises(DeadlineError) as info:
            await eco.ask(
                lambda r: refs.shard(wrong).claim(name="ada", user=UserId("u1"), reply_to=r),
                timeout=0.5,
            )
        assert str(info.value).startswith(
            f"ask (Claim) to entity 'shard' (id {wrong}) got no answer within 0.5 s"
        )
        assert "may still be handled later" in str(info.value)
        assert [d.error_type for d in await eco.dead_letters()] == ["WrongShard"]


async def test_a_timeout_must_be_positive(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(refs.REGISTRY) as eco:
        with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
            await eco.ask(
                lambda r: refs.shard(shard_of("a")).claim(name="a", user=UserId("u"), reply_to=r),
                timeout=0,
            )


def test_a_postgres_client_asks_a_node_in_another_process(tmp_path: Path) -> None:
    dsn = require_postgres()
    schema = new_schema_name()

    async def scenario() -> None:
        # The client creates the schema; the node process then joins it.
        async with Postgres(dsn, refs.REGISTRY, schema=schema, node=False, partitions=4) as eco:
            node = spawn_node(
                dsn,
                schema,
                "examples.usernames.refs:REGISTRY",
                node_id="asked",
                lease=2.0,
                partitions=4,
                log_dir=tmp_path,
            )
            try:
                shard = refs.shard(shard_of("grace"))
                answer = await eco.ask(
                    lambda r: shard.claim(name="grace", user=UserId("g"), reply_to=r),
                    timeout=30.0,
                )
                assert answer == Claimed("grace")
                again = await eco.ask(
                    lambda r: shard.claim(name="grace", user=UserId("h"), reply_to=r),
                    timeout=10.0,
                )
                assert again == Taken("grace")
            finally:
                stop_processes([node])

    try:
        asyncio.run(scenario())
    finally:
        drop_schemas(dsn, [schema])
