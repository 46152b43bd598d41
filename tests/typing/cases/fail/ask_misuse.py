"""`eco.ask` only takes a request whose message carries a reply address, and
its answer has the reply address's type, not another."""

from __future__ import annotations

from examples.usernames import refs
from examples.usernames.shard import ShardId
from examples.usernames.signup import Claimed, UserId
from pachytype import Ecosystem


async def narrower(eco: Ecosystem) -> Claimed:
    return await eco.ask(lambda r: refs.shard(ShardId(1)).claim(name="a", user=UserId("u"), reply_to=r))  # E: Argument 1 to "ask" of "Ecosystem" has incompatible type "Callable[[Address[Claimed]], Request[ShardState, Claimed | Taken]]"; expected "Callable[[Address[Claimed]], Request[Any, Claimed]]"  # E: Incompatible return value type (got "Request[ShardState, Claimed | Taken]", expected "Request[Any, Claimed]")  # E: Argument "reply_to" to "claim" of "ShardRef" has incompatible type "Address[Claimed]"; expected "Address[Claimed | Taken]"  # P: Type "Claimed | Taken" is not assignable to return type "Claimed"


async def misuse(eco: Ecosystem) -> None:
    await eco.ask(lambda r: refs.shard(ShardId(1)).release(name="a", user=UserId("u")))  # E: Argument 1 to "ask" of "Ecosystem" has incompatible type "Callable[[Address[Never]], Envelope[ShardState]]"; expected "Callable[[Address[Never]], Request[Any, Never]]"  # E: Incompatible return value type (got "Envelope[ShardState]", expected "Request[Any, Never]")  # P: "Envelope[ShardState]" is not assignable to "Request[Any, R@ask]"
    await eco.call(refs.signup(UserId("u")).drop(), timeout="soon")  # E: Argument "timeout" to "call" of "Ecosystem" has incompatible type "str"; expected "float | None"  # P: Argument of type "Literal['soon']" cannot be assigned to parameter "timeout" of type "float | None"
