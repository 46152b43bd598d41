"""The Shard: the owner of every username that hashes into it.

Design note. Uniqueness needs one place that decides, per name: the shard
the name hashes to. `shard_of` uses `zlib.crc32`, not `hash()` (salted
per process), so every node and every run agrees on where a name lives.
A shard handles one message at a time (single activation), so of two
claims for a free name the first it receives wins and the second is told
`Taken`. A claim by the name's owner is answered `Claimed` again
(idempotent); a release by a user who does not own the name is refused
with an error, a release of a free name is a no-op. The owners are a dict
in the state, copied, never mutated, on every change.

The shard is event-sourced: a grant is a `NameClaimed` event, a release a
`NameReleased`, so every node can follow `eco.events_of(Shard)` and keep
its own answer to "is this name taken?" (`examples.usernames.cache`)
without asking the shards: writes go to the shards, reads stay local.
"""

from __future__ import annotations

import zlib
from typing import NewType, assert_never

from attrs import evolve, field, frozen

from examples.usernames import signup
from pachytype import Address, Decision, EventSourced

ShardId = NewType("ShardId", int)

SHARDS = 8
"""How many shards the names are spread over (changing it moves names)."""


def shard_of(name: str) -> ShardId:
    """The shard that owns `name`: stable across processes and machines."""
    return ShardId(zlib.crc32(name.encode()) % SHARDS)


class WrongShard(ValueError):
    """A name sent to a shard that does not own it."""

    def __init__(self, name: str, shard: ShardId) -> None:
        super().__init__(
            f"name {name!r} belongs to shard {shard_of(name)}, not shard {shard}; "
            f"address shards with shard_of(name)"
        )


class NotOwner(ValueError):
    """A release of a name by a user who does not hold it."""

    def __init__(self, name: str, user: signup.UserId) -> None:
        super().__init__(
            f"release of {name!r} by user {user!r} refused: the name belongs to another "
            f"user; only its owner can release it"
        )


@frozen
class Claim:
    """Give `name` to `user` if it is free; answer at `reply_to`."""

    name: str
    user: signup.UserId
    reply_to: Address[signup.Claimed | signup.Taken]


@frozen
class Release:
    """Free `name`, held by `user`."""

    name: str
    user: signup.UserId


ShardMsg = Claim | Release


@frozen
class NameClaimed:
    """`name` now belongs to `user`."""

    name: str
    user: signup.UserId


@frozen
class NameReleased:
    """`name`, held by `user`, is free again."""

    name: str
    user: signup.UserId


ShardEvent = NameClaimed | NameReleased


@frozen
class ShardState:
    """Which shard I am, and who owns each of my names that is taken."""

    me: ShardId
    owners: dict[str, signup.UserId] = field(factory=dict)


class Shard(EventSourced[ShardId, ShardMsg, ShardEvent, ShardState]):
    """Grants each of its names to one user at a time."""

    def init(self, id: ShardId) -> ShardState:
        return ShardState(me=id)

    def decide(self, msg: ShardMsg, state: ShardState) -> Decision[ShardEvent]:
        match msg:
            case Claim(name=name, user=user, reply_to=reply_to):
                _check_mine(name, state.me)
                owner = state.owners.get(name)
                if owner is not None and owner != user:
                    return [reply_to.post(signup.Taken(name))], []
                granted = [] if owner == user else [NameClaimed(name, user)]
                return [reply_to.post(signup.Claimed(name))], granted
            case Release(name=name, user=user):
                _check_mine(name, state.me)
                owner = state.owners.get(name)
                if owner is None:
                    return [], []
                if owner != user:
                    raise NotOwner(name, user)
                return [], [NameReleased(name, user)]
            case _:
                assert_never(msg)

    def evolve(self, state: ShardState, event: ShardEvent) -> ShardState:
        match event:
            case NameClaimed(name=name, user=user):
                return evolve(state, owners={**state.owners, name: user})
            case NameReleased(name=name):
                owners = {n: u for n, u in state.owners.items() if n != name}
                return evolve(state, owners=owners)
            case _:
                assert_never(event)


def _check_mine(name: str, shard: ShardId) -> None:
    if shard_of(name) != shard:
        raise WrongShard(name, shard)
