"""`state`, `follow` and `call` are typed by the ref's (or envelope's) state type."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import assert_type

from examples.bank.account import AccountId, AccountState
from examples.bank.refs import account
from examples.ping_pong import refs
from examples.ping_pong.ping import PingerId, PingerState
from examples.ping_pong.pong import PongerId, PongerState
from examples.ping_pong.refs import REGISTRY
from pachytype import Ecosystem, Simulation


async def watch(eco: Ecosystem) -> tuple[int, ...]:
    follower = eco.follow(refs.pinger(PingerId("alice")))
    assert_type(follower, AsyncIterator[PingerState])
    async for state in follower:
        if len(state.pongs) >= 3:
            return state.pongs
    return ()


async def balances(eco: Ecosystem, ids: list[AccountId]) -> int:
    states = [await eco.state(account(i)) for i in ids]
    assert_type(states, list[AccountState])
    return sum(s.balance for s in states)


async def rally(eco: Ecosystem) -> PongerState:
    after = await eco.call(refs.pinger(PingerId("a")).serve(opponent=PongerId("b"), rallies=2))
    assert_type(after, PingerState)
    return await eco.state(refs.ponger(PongerId("b")))


def simulated() -> int:
    sim = Simulation(REGISTRY, seed=1)
    result = sim.run([refs.pinger(PingerId("a")).serve(opponent=PongerId("b"))])
    assert_type(result.state(refs.pinger(PingerId("a"))), PingerState)
    assert_type(sim.state(refs.ponger(PongerId("b"))), PongerState)
    return sim.state(refs.ponger(PongerId("b"))).answered
