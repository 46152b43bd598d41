"""The activation budget (issue 10): a runaway `activate` is interrupted, its
message dead-lettered, and every other entity keeps answering, on every
ecosystem that runs activations (the simulation runs user code on purpose
without a clock)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from pachytype import ActivationError, ActivationTimeoutError, Ecosystem, InMemory, LocalDisk
from pachytype._postgres.testing import drop_schemas, new_schema_name, require_postgres
from pachytype.ecosystems._postgres import Postgres
from tests.poison import refs
from tests.poison.refs import REGISTRY

Opener = Callable[[Path, float], Ecosystem]

OPENERS: dict[str, Opener] = {
    "inmemory": lambda _dir, budget: InMemory(REGISTRY, activation_budget=budget),
    "localdisk": lambda d, budget: LocalDisk(d / "eco.db", REGISTRY, activation_budget=budget),
}


@pytest.mark.parametrize("kind", sorted(OPENERS))
async def test_a_looping_activate_is_cut_at_its_budget_and_the_rest_goes_on(
    kind: str, tmp_path: Path
) -> None:
    async with OPENERS[kind](tmp_path, 0.2) as eco:
        await eco.call(refs.job("a").work())
        started = time.monotonic()
        with pytest.raises(ActivationError) as info:
            await asyncio.wait_for(eco.call(refs.job("a").spin()), 10)
        took = time.monotonic() - started
        assert 0.2 <= took < 2.0
        error = info.value.__cause__
        assert isinstance(error, ActivationTimeoutError)
        assert str(error).startswith(
            "entity 'job' (id 'a') ran past its activation budget of 0.2 s and was interrupted"
        )
        assert "raise the budget (`activation_budget`" in str(error)
        assert await eco.call(refs.job("a").work()) == 2  # state kept, entity goes on
        assert await eco.call(refs.job("b").work()) == 1
        (dead,) = await eco.dead_letters()
        assert dead.error_type == "ActivationTimeoutError" and dead.state == 1


async def test_a_blocking_activate_is_cut_too(tmp_path: Path) -> None:
    async with InMemory(REGISTRY, activation_budget=0.2) as eco:
        started = time.monotonic()
        await eco.send(refs.job("s").block(seconds=30), refs.job("s").work())
        await asyncio.wait_for(eco.settle(), 10)
        assert time.monotonic() - started < 2.0
        assert await eco.state(refs.job("s")) == 1
        assert [d.error_type for d in await eco.dead_letters()] == ["ActivationTimeoutError"]


async def test_an_entity_class_may_set_its_own_budget() -> None:
    async with InMemory(REGISTRY, activation_budget=30) as eco:
        with pytest.raises(ActivationError, match=r"budget of 0\.2 s"):
            await asyncio.wait_for(eco.call(refs.strict("x").spin()), 10)
        # under the budget: a short block is fine
        assert await eco.call(refs.job("ok").block(seconds=0.05)) == 1000


async def test_after_a_crash_in_a_loop_reopening_does_not_hang(tmp_path: Path) -> None:
    """The looping message was stored before the process went down: at reopen
    it is dead-lettered by the budget instead of hanging every reopen."""
    db = tmp_path / "eco.db"
    async with LocalDisk(db, REGISTRY, activation_budget=0.2) as eco:
        await eco.call(refs.job("r").work())
    import sqlite3

    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO mailbox VALUES (1000, 'job', 'r', ?)", (b'["Spin",{}]',))
    conn.execute("INSERT INTO mailbox VALUES (1001, 'job', 'r', ?)", (b'["Work",{}]',))
    conn.commit()
    conn.close()
    async with LocalDisk(db, REGISTRY, activation_budget=0.2) as eco:
        await asyncio.wait_for(eco.settle(), 10)
        assert await eco.state(refs.job("r")) == 2
        assert len(await eco.dead_letters()) == 1


def test_a_budget_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"activation_budget=0 for InMemory: give the seconds"):
        InMemory(REGISTRY, activation_budget=0)


async def test_a_postgres_node_cuts_a_looping_activate_before_its_lease_expires() -> None:
    dsn = require_postgres()
    schema = new_schema_name()
    try:
        async with Postgres(
            dsn,
            REGISTRY,
            schema=schema,
            partitions=4,
            lease=timedelta(seconds=2),
            poll_interval=0.1,
        ) as eco:
            await eco.send(refs.job("p").spin(), *(refs.job(f"o{i}").work() for i in range(8)))
            answers = await asyncio.wait_for(
                asyncio.gather(*(eco.call(refs.job(f"o{i}").work()) for i in range(8))), 20
            )
            assert answers == [2] * 8
            await asyncio.wait_for(eco.settle(), 20)
            (dead,) = await eco.dead_letters()
            assert dead.error_type == "ActivationTimeoutError"
            assert "budget of 0.5 s" in dead.error  # a quarter of the 2 s lease
    finally:
        drop_schemas(dsn, [schema])
