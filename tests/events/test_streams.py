"""Event streams: `eco.events(ref, after=...)` and `eco.events_of(Entity, after=...)`
on every ecosystem: per-entity order, resumable positions, no gaps while
writers run, positions that survive a restart (every durable ecosystem), and the end of a
stream when its ecosystem closes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pachytype import Ecosystem, PachytypeError, StoredEvent
from pachytype.testing import EcosystemFactory
from tests.events_pkg import refs
from tests.events_pkg.cart import Added, Cart, CartId
from tests.events_pkg.refs import REGISTRY
from tests.events_pkg.tally import Counted, Tally


def cart(name: str) -> refs.CartRef:
    return refs.cart(CartId(name))


async def take(stream: Any, count: int) -> list[Any]:
    """The first `count` items of a stream (waiting for them)."""
    out: list[Any] = []
    async for item in stream:
        out.append(item)
        if len(out) == count:
            break
    return out


async def test_an_entitys_stream_resumes_after_a_sequence_number_then_goes_live(
    ecosystem: EcosystemFactory,
) -> None:
    async with ecosystem(REGISTRY) as eco:
        c = cart("one")
        for item in "abc":
            await eco.call(c.add(item=item))
        stream = eco.events(c, after=2)
        first = await anext(stream)
        assert first == (3, Added("c", 1))
        later = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)
        assert not later.done()  # waits for the next commit
        await eco.call(c.add(item="d"))
        assert await asyncio.wait_for(later, 10) == (4, Added("d", 1))


async def test_the_type_stream_misses_nothing_while_many_writers_run(
    ecosystem: EcosystemFactory,
) -> None:
    """Readers start before, during and after the writes; each sees every event
    once, each entity's in its order, positions strictly increasing."""
    async with ecosystem(REGISTRY) as eco:
        carts, per_cart = 20, 30
        total = carts * per_cart

        async def write(name: str) -> None:
            for i in range(per_cart):
                await eco.send(cart(name).add(item=f"{name}-{i}"))

        early = asyncio.ensure_future(take(eco.events_of(Cart), total))
        writers = [asyncio.ensure_future(write(f"w{n}")) for n in range(carts)]
        await asyncio.sleep(0)
        during = asyncio.ensure_future(take(eco.events_of("cart"), total))
        await asyncio.gather(*writers)
        await eco.settle()
        late = await take(eco.events_of(Cart), total)
        for seen in (await asyncio.wait_for(early, 30), await asyncio.wait_for(during, 30), late):
            positions = [e.position for e in seen]
            assert positions == sorted(set(positions))  # increasing, no duplicate
            for n in range(carts):
                mine = [e for e in seen if e.ref == cart(f"w{n}")]
                assert [e.seq for e in mine] == list(range(1, per_cart + 1))
                assert [e.event for e in mine] == [Added(f"w{n}-{i}", 1) for i in range(per_cart)]


async def test_resuming_after_any_position_gives_exactly_the_rest(
    ecosystem: EcosystemFactory,
) -> None:
    async with ecosystem(REGISTRY) as eco:
        for i in range(12):
            await eco.call(cart(f"r{i % 3}").add(item=str(i)))
        everything = await take(eco.events_of(Cart), 12)
        for cut in range(12):
            rest = (
                await take(eco.events_of(Cart, after=everything[cut].position), 11 - cut)
                if cut < 11
                else []
            )
            assert rest == everything[cut + 1 :]


@pytest.mark.durable
async def test_positions_survive_a_restart(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        for i in range(5):
            await eco.call(cart(f"p{i % 2}").add(item=str(i)))
        seen = await take(eco.events_of(Cart), 5)
    resume = seen[2].position
    async with ecosystem(REGISTRY) as eco:  # the same one, reopened
        for i in range(5, 8):
            await eco.call(cart(f"p{i % 2}").add(item=str(i)))
        rest: list[StoredEvent[Any]] = await take(eco.events_of(Cart, after=resume), 5)
        assert rest[:2] == seen[3:]
        assert [e.event for e in rest[2:]] == [Added(str(i), 1) for i in range(5, 8)]
        assert [e.seq for e in rest if e.ref == cart("p1")] == [2, 3, 4]
        assert [(s, e) for s, e in await take(eco.events(cart("p0"), after=1), 3)] == [
            (2, Added("2", 1)),
            (3, Added("4", 1)),
            (4, Added("6", 1)),
        ]


async def test_streams_end_when_the_ecosystem_closes(ecosystem: EcosystemFactory) -> None:
    eco: Ecosystem = ecosystem(REGISTRY)
    await eco.open()
    await eco.call(cart("e").add(item="x"))
    got: list[object] = []

    async def read() -> None:
        async for item in eco.events_of(Cart):
            got.append(item)

    reader = asyncio.ensure_future(read())
    while not got:
        await asyncio.sleep(0)
    await eco.close()
    await asyncio.wait_for(reader, 10)
    assert len(got) == 1


async def test_a_type_that_keeps_no_events_or_is_unknown_is_refused(
    ecosystem: EcosystemFactory,
) -> None:
    async with ecosystem(REGISTRY) as eco:
        with pytest.raises(PachytypeError) as info:
            eco.events_of("ledger")
        assert "entity 'ledger' is not event-sourced" in str(info.value)
        with pytest.raises(PachytypeError) as unknown:
            eco.events_of("nope")
        assert "'nope'" in str(unknown.value)


async def test_each_event_sourced_type_numbers_its_own_positions(
    ecosystem: EcosystemFactory,
) -> None:
    """Two event-sourced types in one ecosystem (on Postgres both used to
    take position 1, and the second type's commits failed)."""
    async with ecosystem(REGISTRY) as eco:
        for i in range(3):
            await eco.call(cart("both").add(item=str(i)))
            await eco.call(refs.tally("t").count(n=i))
        assert await eco.state(refs.tally("t")) == 3
        carts = await take(eco.events_of(Cart), 3)
        tallies = await take(eco.events_of(Tally), 3)
        assert [e.event for e in carts] == [Added(str(i), 1) for i in range(3)]
        assert [e.event for e in tallies] == [Counted(i) for i in range(3)]
        for stream in (carts, tallies):
            positions = [e.position for e in stream]
            assert positions == sorted(set(positions))
