"""The `ecosystem` fixture (pachytype.testing): every kind, reopening by
name, the `durable` marker."""

from __future__ import annotations

import pytest

from examples.counter import refs
from examples.counter.counter import CounterId
from examples.counter.refs import REGISTRY
from pachytype.testing import KINDS, EcosystemFactory, NotDurableWarning

C = refs.counter(CounterId("c"))


def test_the_fixture_runs_over_every_kind_postgres_included() -> None:
    assert set(KINDS) == {"inmemory", "localdisk", "postgres", "simulation"}


@pytest.mark.durable
async def test_reopening_a_name_keeps_the_state_on_durable_kinds(
    ecosystem: EcosystemFactory,
) -> None:
    assert ecosystem.durable
    async with ecosystem(REGISTRY) as eco:
        await eco.call(C.increment())
        await eco.send(C.increment())
        await eco.settle()
    async with ecosystem(REGISTRY) as eco:
        assert await eco.state(C) == 2
        assert await eco.call(C.increment()) == 3


async def test_a_new_name_is_a_fresh_ecosystem(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY, "one") as one:
        await one.call(C.increment())
        async with ecosystem(REGISTRY, "two") as two:
            assert await two.state(C) == 0
            assert await one.state(C) == 1


async def test_reopening_a_name_on_a_kind_that_is_not_durable_says_so(
    ecosystem: EcosystemFactory,
) -> None:
    if ecosystem.durable:
        pytest.skip(f"{ecosystem.kind} is durable")
    async with ecosystem(REGISTRY) as eco:
        await eco.call(C.increment())
    with pytest.warns(NotDurableWarning, match="inmemory is not durable, so it starts empty"):
        eco = ecosystem(REGISTRY)
    async with eco:
        assert await eco.state(C) == 0
