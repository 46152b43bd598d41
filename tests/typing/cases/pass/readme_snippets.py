"""The README's snippets, as written there (sections 2 and 3)."""

from __future__ import annotations

import asyncio

from examples.counter import refs
from examples.counter.counter import CounterId
from examples.counter.refs import REGISTRY, counter
from pachytype import InMemory

refs.counter(CounterId("c1")).add(amount=5)  # an Envelope[int]: the state type rides along


async def main() -> None:
    async with InMemory(REGISTRY) as eco:
        c = counter(CounterId("c1"))
        print(await eco.call(c.increment()))  # 1 — typed int
        await eco.send(c.add(amount=5))  # fire and forget
        await eco.settle()
        print(await eco.state(c))  # 6
        async for state in eco.follow(c):  # current state, then every change
            print(state)


asyncio.run(main())
