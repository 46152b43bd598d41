"""What InMemory promises beyond the conformance suite: bounded memory for
many idle entities, fairness between busy and quiet entities, clean close."""

from __future__ import annotations

import asyncio
import tracemalloc

import pytest

from pachytype import EcosystemClosedError, InMemory
from tests.conformance import refs
from tests.conformance.entities import TallyId
from tests.conformance.refs import REGISTRY


async def test_idle_entities_are_passivated_so_memory_stays_bounded() -> None:
    ids = 50_000
    async with InMemory(REGISTRY) as eco:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for start in range(0, ids, 10_000):
            await eco.send(*(refs.log(i).append(value=1) for i in range(start, start + 10_000)))
            await eco.settle()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        rt = eco._rt
        assert rt._live == {}, "no live records remain once every inbox is empty"
        assert len(rt._recent) <= 10_000
        assert len(rt.states) == ids
        per_entity = (after - before) / ids
        # A state (a 1-tuple), its key and its dict slot: a few hundred bytes,
        # never an inbox, a task or a queue per entity.
        assert per_entity < 400, f"{per_entity:.0f} bytes per idle entity"


async def test_a_busy_entity_does_not_starve_the_others() -> None:
    async with InMemory(REGISTRY) as eco:
        busy = refs.tally(TallyId("busy"))
        await eco.send(*(busy.add(n=1) for _ in range(100_000)))
        assert await eco.call(refs.tally(TallyId("quiet")).add(n=1)) == 1
        assert await eco.state(busy) < 100_000
        await eco.settle()
        assert await eco.state(busy) == 100_000


async def test_a_loop_of_calls_answered_inline_still_lets_other_tasks_run() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async with InMemory(REGISTRY) as eco:
        task = asyncio.create_task(ticker())
        for _ in range(1_000):
            await eco.call(refs.tally(TallyId("inline")).add(n=1))
        task.cancel()
        assert ticks >= 1_000 // 16 - 1


async def test_closing_fails_pending_calls_and_ends_followers() -> None:
    eco = InMemory(REGISTRY)
    async with eco:
        followed: list[int] = []

        async def follow() -> None:
            async for state in eco.follow(refs.tally(TallyId("c"))):
                followed.append(state)

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0.01)
        await eco.send(*(refs.tally(TallyId("c")).add(n=1) for _ in range(10_000)))
        pending = asyncio.ensure_future(eco.call(refs.tally(TallyId("c")).add(n=1)))
        await asyncio.sleep(0)
    with pytest.raises(EcosystemClosedError, match="closed before this message was handled"):
        await pending
    await asyncio.wait_for(follower, 1)
    assert followed[0] == 0


async def test_an_ecosystem_cannot_be_opened_twice() -> None:
    async with InMemory(REGISTRY) as eco:
        with pytest.raises(RuntimeError, match="already open"):
            await eco.open()


async def test_outside_sends_wait_while_the_backlog_is_full() -> None:
    """Backpressure: a sender flooding an InMemory ecosystem is made to wait,
    so queued messages stay bounded (not 1M messages and gigabytes)."""
    async with InMemory(REGISTRY, max_backlog=100) as eco:
        peak = 0

        async def sender(k: int) -> None:
            nonlocal peak
            for _ in range(100):
                await eco.send(*(refs.tally(TallyId(f"b{k}")).add(n=1) for _ in range(10)))
                peak = max(peak, eco._rt._backlog)

        await asyncio.gather(*(sender(k) for k in range(4)))
        await eco.settle()
        assert [await eco.state(refs.tally(TallyId(f"b{k}"))) for k in range(4)] == [1000] * 4
        assert peak <= 100 + 4 * 10  # each sender may add one batch past the limit
        assert eco._rt._backlog == 0
