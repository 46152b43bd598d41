"""The README tour: declare, generate, run; every result typed."""

from __future__ import annotations

import asyncio
from typing import assert_type

from examples.counter.counter import CounterId
from examples.counter.refs import REGISTRY, CounterRef, counter
from pachytype import Envelope, InMemory


async def main() -> None:
    async with InMemory(REGISTRY) as eco:
        c = counter(CounterId("c1"))
        assert_type(c, CounterRef)
        assert_type(c.add(amount=5), Envelope[int])
        assert_type(c.increment(), Envelope[int])
        assert_type(await eco.call(c.increment()), int)
        await eco.send(c.add(amount=5), c.add(), c.reset())
        await eco.settle()
        assert_type(await eco.state(c), int)
        async for state in eco.follow(c):
            assert_type(state, int)
            if state > 10:
                break
        for letter in await eco.dead_letters():
            print(letter.to, letter.message, letter.error)


asyncio.run(main())
