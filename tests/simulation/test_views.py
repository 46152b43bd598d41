"""Several ecosystem views of one simulation open at once (`sim.ecosystem()`
twice): each has its own calls, followers and event streams; all share the
world (states, timers, dead letters, the event log), its clock and its one
seeded delivery order.

A view that hangs fails the test: every wait is under `asyncio.wait_for`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from typing import TypeVar

import pytest

from pachytype import ActivationError, EcosystemClosedError, ManualClock, Simulation
from pachytype._inbox import INBOX
from tests.conformance import refs as conformance
from tests.conformance.entities import Append
from tests.events_pkg import refs as carts
from tests.events_pkg.cart import Added, Cart, CartId, Removed
from tests.simulation import refs
from tests.simulation.refs import REGISTRY

T = TypeVar("T")

WAIT = 10.0
"""Seconds before a wait counts as a hang (each one takes milliseconds)."""


async def within(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, WAIT)


async def next_of(stream: AsyncIterator[T]) -> T:
    return await within(anext(stream))


async def test_a_call_through_one_view_completes_while_another_delivers() -> None:
    sim = Simulation(REGISTRY, seed=1)
    async with sim.ecosystem() as a, sim.ecosystem() as b:
        await a.send(refs.total("t").add(n=1))  # wakes the world for `a`
        assert await within(b.call(refs.total("t").add(n=2))) == 3
        both = asyncio.gather(a.call(refs.total("u").add(n=1)), b.call(refs.total("v").add(n=5)))
        assert list(await within(both)) == [1, 5]


async def test_a_follower_on_one_view_sees_what_another_view_sends() -> None:
    sim = Simulation(REGISTRY, seed=2)
    async with sim.ecosystem() as a, sim.ecosystem() as b:
        states = a.follow(refs.total("t"))
        assert await next_of(states) == 0
        await within(b.call(refs.total("t").add(n=4)))
        assert await next_of(states) == 4


async def test_views_share_the_dead_letters() -> None:
    sim = Simulation(REGISTRY, seed=3)
    async with sim.ecosystem() as a, sim.ecosystem() as b:
        await a.send(refs.total("t").add(n=101))
        with pytest.raises(ActivationError):
            await within(b.call(refs.total("t").add(n=102)))
        await within(a.settle())
        dead = await b.dead_letters()
        assert (
            [d.message for d in dead]
            == [d.message for d in await a.dead_letters()]
            == [refs.total("t").add(n=101).message, refs.total("t").add(n=102).message]
        )
        await b.discard(dead[0])
        assert [d.seq for d in await a.dead_letters()] == [dead[1].seq]


async def test_closing_one_view_ends_its_calls_and_follows_not_the_others() -> None:
    clock = ManualClock()
    sim = Simulation(REGISTRY, seed=4)
    b = sim.ecosystem(clock=clock)
    async with b:
        async with sim.ecosystem(clock=clock) as a:
            later = refs.total("t").add(n=1).after(timedelta(hours=1))
            a_call = asyncio.ensure_future(a.call(later))
            b_call = asyncio.ensure_future(
                b.call(refs.total("t").add(n=2).after(timedelta(hours=2)))
            )
            a_follow, b_follow = a.follow(refs.total("t")), b.follow(refs.total("t"))
            assert await next_of(a_follow) == await next_of(b_follow) == 0
        with pytest.raises(EcosystemClosedError):
            await within(a_call)
        with pytest.raises(StopAsyncIteration):
            await next_of(a_follow)
        clock.advance(timedelta(hours=2))  # both delayed messages fall due
        assert await within(b_call) == 3
        assert {await next_of(b_follow), await next_of(b_follow)} == {1, 3}


async def test_closing_one_view_ends_its_settle_not_the_others() -> None:
    sim = Simulation(REGISTRY)
    spinner = refs.spinner("s")
    async with sim.ecosystem() as b:
        async with sim.ecosystem() as a:
            await a.send(spinner.spin(me=spinner))  # busy for ever: no settle returns
            a_settle = asyncio.ensure_future(a.settle())
            b_settle = asyncio.ensure_future(b.settle())
            await asyncio.sleep(0)  # one turn of the loop: both settles wait on the world
        with pytest.raises(EcosystemClosedError):
            await within(a_settle)
        assert not b_settle.done()
    with pytest.raises(EcosystemClosedError):
        await within(b_settle)


async def test_asks_through_two_open_views_get_their_own_answers() -> None:
    sim = Simulation(conformance.REGISTRY, seed=5)
    async with sim.ecosystem() as a, sim.ecosystem() as b:
        asks = [
            eco.ask(
                # An Emit sends its values to `to` at once: the inbox gets Append(value).
                lambda r, v=value: conformance.emitter("e").emit(to=r, values=(v,)),  # type: ignore[arg-type,misc]  # no reply_to field, on purpose
                timeout=WAIT,
            )
            for value, eco in enumerate((a, b, a, b))
        ]
        assert list(await within(asyncio.gather(*asks))) == [Append(v) for v in range(4)]
        assert not [key for key in sim._world.states if key[0] == INBOX]  # none left behind


async def test_closing_one_view_ends_its_event_streams_not_the_others() -> None:
    sim = Simulation(carts.REGISTRY)
    k = CartId("k")
    b = sim.ecosystem()
    async with b:
        b_stream = b.events_of(Cart)
        async with sim.ecosystem() as a:
            a_stream = a.events(carts.cart(k))
            await within(a.call(carts.cart(k).add(item="x")))
            assert await next_of(a_stream) == (1, Added("x", 1))
            assert (await next_of(b_stream)).event == Added("x", 1)
        with pytest.raises(StopAsyncIteration):
            await next_of(a_stream)
        await within(b.call(carts.cart(k).remove(item="x")))
        assert (await next_of(b_stream)).event == Removed("x")
        async with sim.ecosystem() as c:  # a view opened later streams from the same log
            assert [e async for e in _first(c.events(carts.cart(k)), 2)] == [
                (1, Added("x", 1)),
                (2, Removed("x")),
            ]


async def _first(stream: AsyncIterator[T], n: int) -> AsyncIterator[T]:
    for _ in range(n):
        yield await next_of(stream)


async def two_views_arrival_order(seed: int) -> object:
    sim = Simulation(REGISTRY, seed=seed)
    async with sim.ecosystem() as a, sim.ecosystem() as b:
        await a.send(*(refs.relay(i).forward(to=refs.log("l"), value=i) for i in range(4)))
        await b.send(*(refs.relay(i).forward(to=refs.log("l"), value=i) for i in range(4, 8)))
        await within(b.settle())
        return await a.state(refs.log("l"))


async def test_two_views_deliver_in_one_seeded_order() -> None:
    orders = [await two_views_arrival_order(seed) for seed in range(8)]
    assert len(set(orders)) > 3
    assert orders == [await two_views_arrival_order(seed) for seed in range(8)]


async def test_views_open_at_once_share_one_clock() -> None:
    clock = ManualClock()
    sim = Simulation(REGISTRY)
    async with sim.ecosystem(clock=clock) as a:
        async with sim.ecosystem() as b:
            assert b.clock is a.clock
        other = sim.ecosystem(clock=ManualClock())
        with pytest.raises(ValueError, match="share one clock") as raised:
            await other.open()
    assert "open it with clock=None to take theirs" in str(raised.value)
