"""`eco.ask` is typed by the reply address the request declares: mypy infers
the answer's type from the lambda, and `timeout=` is accepted everywhere."""

from __future__ import annotations

from examples.usernames import refs
from examples.usernames.shard import ShardId
from examples.usernames.signup import Claimed, Taken, UserId
from pachytype import Ecosystem


async def claim(eco: Ecosystem) -> str:
    answer = await eco.ask(
        lambda r: refs.shard(ShardId(1)).claim(name="ada", user=UserId("u"), reply_to=r),
        timeout=2.0,
    )
    exact: Claimed | Taken = answer
    match exact:
        case Claimed(name=name):
            return name
        case Taken(name=name):
            return "taken: " + name


async def deadlines(eco: Ecosystem) -> int:
    state = await eco.call(refs.signup(UserId("u")).choose(name="x"), timeout=1.0)
    shard = await eco.state(refs.shard(ShardId(0)), timeout=0.5)
    return len(state.refused) + len(shard.owners)
