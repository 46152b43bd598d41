"""The Signup: one user choosing a username, through the name's shard.

Design note. `Choose` sends a `Claim` to `shard_of(name)` with this
signup's own address as the reply address, and remembers the name it is
`asking` for; the answer, `Claimed` or `Taken`, settles it. An answer for
a name no longer asked for (the user chose again, or dropped, meanwhile)
is stale: a stale `Claimed` is released at once, so a user never holds
two names. Taking a new name releases the old one; `Drop` releases the
name held and cancels any pending request.
"""

from __future__ import annotations

from typing import NewType, assert_never

from attrs import evolve, frozen

from examples.usernames import refs, shard
from pachytype import Activation, Entity, Envelope

UserId = NewType("UserId", str)


class EmptyName(ValueError):
    """A username with nothing in it."""

    def __init__(self, user: UserId) -> None:
        super().__init__(
            f"user {user!r} chose an empty username; a username needs at least one "
            f"character that is not a space"
        )


@frozen
class Choose:
    """Ask for `name`, giving up the current name once it is granted."""

    name: str


@frozen
class Drop:
    """Release the name held, and forget any name asked for."""


@frozen
class Claimed:
    """The shard's answer: `name` is now mine."""

    name: str


@frozen
class Taken:
    """The shard's answer: `name` belongs to someone else."""

    name: str


SignupMsg = Choose | Drop | Claimed | Taken


@frozen
class SignupState:
    """Who I am, the name I hold, the name I am asking for, and the names I
    was refused, in order."""

    me: UserId
    name: str | None = None
    asking: str | None = None
    refused: tuple[str, ...] = ()


class Signup(Entity[UserId, SignupMsg, SignupState]):
    """A user's username: asks the shards, records their answers."""

    def init(self, id: UserId) -> SignupState:
        return SignupState(me=id)

    def activate(self, msg: SignupMsg, state: SignupState) -> Activation[SignupState]:
        match msg:
            case Choose(name=name):
                if not name.strip():
                    raise EmptyName(state.me)
                if name == state.name:
                    return [], evolve(state, asking=None)
                claim = refs.shard(shard.shard_of(name)).claim(
                    name=name, user=state.me, reply_to=refs.signup(state.me)
                )
                return [claim], evolve(state, asking=name)
            case Drop():
                freed = [] if state.name is None else [_release(state.name, state.me)]
                return freed, evolve(state, name=None, asking=None)
            case Claimed(name=name):
                if name != state.asking:
                    return [_release(name, state.me)], state
                old = [] if state.name is None else [_release(state.name, state.me)]
                return old, evolve(state, name=name, asking=None)
            case Taken(name=name):
                asking = None if name == state.asking else state.asking
                return [], evolve(state, asking=asking, refused=(*state.refused, name))
            case _:
                assert_never(msg)


def _release(name: str, user: UserId) -> Envelope[shard.ShardState]:
    return refs.shard(shard.shard_of(name)).release(name=name, user=user)
