"""The ping_pong example: a Pinger and a Ponger in two modules, replying
through a narrowed address, on every ecosystem."""

from __future__ import annotations

import asyncio

from examples.ping_pong import refs
from examples.ping_pong.ping import PingerId, PingerState, Pong
from examples.ping_pong.pong import PongerId, PongerState
from examples.ping_pong.refs import REGISTRY
from pachytype import Simulation
from pachytype.testing import EcosystemFactory

ALICE = PingerId("alice")
BOB = PongerId("bob")


async def test_a_ping_gets_its_pong(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        after = await eco.call(refs.ponger(BOB).ping(n=7, reply_to=refs.pinger(ALICE)))
        assert after == PongerState(me=BOB, answered=1)
        await eco.settle()
        # A lone ping (no rally served) still gets its pong, recorded by the pinger.
        assert await eco.state(refs.pinger(ALICE)) == PingerState(me=ALICE, rallies=0, pongs=(7,))


async def test_a_rally_plays_every_ping_and_pong_and_stops(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        await eco.send(refs.pinger(ALICE).serve(opponent=BOB, rallies=5))
        await eco.settle()
        assert await eco.state(refs.pinger(ALICE)) == PingerState(ALICE, 5, (1, 2, 3, 4, 5))
        assert await eco.state(refs.ponger(BOB)) == PongerState(BOB, answered=5)
        assert await eco.dead_letters() == []


async def test_a_rally_of_zero_sends_nothing(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        after = await eco.call(refs.pinger(ALICE).serve(opponent=BOB, rallies=0))
        await eco.settle()
        assert after == PingerState(ALICE)
        assert await eco.state(refs.ponger(BOB)) == PongerState(BOB, answered=0)


async def test_follow_sees_each_pong_arrive_in_order(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        seen: list[PingerState] = []

        async def watch() -> None:
            async for state in eco.follow(refs.pinger(ALICE)):
                seen.append(state)
                if len(state.pongs) == 3:
                    return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.05)
        await eco.send(refs.pinger(ALICE).serve(opponent=BOB, rallies=3))
        await asyncio.wait_for(watcher, 5)
        assert [s.pongs for s in seen] == [(), (), (1,), (1, 2), (1, 2, 3)]
        assert [s.rallies for s in seen] == [0, 3, 3, 3, 3]


async def test_two_pingers_share_one_ponger_and_each_gets_only_its_pongs(
    ecosystem: EcosystemFactory,
) -> None:
    async with ecosystem(REGISTRY) as eco:
        carol = PingerId("carol")
        await eco.send(
            refs.pinger(ALICE).serve(opponent=BOB, rallies=4),
            refs.pinger(carol).serve(opponent=BOB, rallies=2),
        )
        await eco.settle()
        assert (await eco.state(refs.pinger(ALICE))).pongs == (1, 2, 3, 4)
        assert (await eco.state(refs.pinger(carol))).pongs == (1, 2)
        assert (await eco.state(refs.ponger(BOB))).answered == 6


async def test_a_pong_sent_from_outside_is_recorded_like_any_other(
    ecosystem: EcosystemFactory,
) -> None:
    async with ecosystem(REGISTRY) as eco:
        after = await eco.call(refs.pinger(ALICE).post(Pong(n=1, by=BOB)))
        # No rally was served, so the pinger answers nothing.
        await eco.settle()
        assert after.pongs == (1,)
        assert await eco.state(refs.ponger(BOB)) == PongerState(BOB, answered=0)


def test_two_rallies_end_the_same_whatever_the_delivery_order() -> None:
    carol = PingerId("carol")
    report = Simulation(REGISTRY, seed=3).exhaust(
        [
            refs.pinger(ALICE).serve(opponent=BOB, rallies=3),
            refs.pinger(carol).serve(opponent=BOB, rallies=2),
        ]
    )
    assert report.complete, report.summary()
    assert report.deterministic, str(report)
    (found,) = report.outcomes
    assert found.outcome[refs.pinger(ALICE)] == PingerState(ALICE, 3, (1, 2, 3))
    assert found.outcome[refs.pinger(carol)] == PingerState(carol, 2, (1, 2))
    assert found.outcome[refs.ponger(BOB)] == PongerState(BOB, answered=5)
