"""A Simulation behind the async Ecosystem interface (the conformance suite
runs on it through the `ecosystem` fixture; these are its own promises)."""

from __future__ import annotations

from pachytype import Simulation
from tests.simulation import refs
from tests.simulation.refs import REGISTRY


async def arrival_order(seed: int) -> object:
    sim = Simulation(REGISTRY, seed=seed)
    async with sim.ecosystem() as eco:
        await eco.send(*(refs.relay(i).forward(to=refs.log("l"), value=i) for i in range(5)))
        await eco.settle()
        return await eco.state(refs.log("l"))


async def test_delivery_orders_are_shuffled_by_the_seed_and_repeat_with_it() -> None:
    orders = [await arrival_order(seed) for seed in range(12)]
    assert len(set(orders)) > 3
    assert orders == [await arrival_order(seed) for seed in range(12)]


async def test_the_ecosystem_works_on_the_simulations_world() -> None:
    sim = Simulation(REGISTRY)
    sim.run([refs.total("t").add(n=5)])
    async with sim.ecosystem() as eco:
        assert await eco.call(refs.total("t").add(n=1)) == 6
    assert sim.state(refs.total("t")) == 6
    assert sim.run([refs.total("t").add(n=1)]).state(refs.total("t")) == 7
