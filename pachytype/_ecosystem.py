"""The public face every ecosystem shares: send, call, state, follow, dead letters.

Concrete ecosystems (InMemory, LocalDisk, Postgres) differ only in where state
and mail live; user code and the conformance suite are written against this.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self, TypeVar

from pachytype._address import Envelope, Ref
from pachytype._deadletter import DeadLetter
from pachytype._registry import Registry

S = TypeVar("S")


class Ecosystem(ABC):
    """A running set of entities. Use it as an async context manager::

    async with InMemory(REGISTRY) as eco:
        state = await eco.call(refs.counter("c").increment())
    """

    registry: Registry

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abstractmethod
    async def open(self) -> None:
        """Start delivering messages."""

    @abstractmethod
    async def close(self) -> None:
        """Stop delivering; pending `call`s fail with `EcosystemClosedError`."""

    @abstractmethod
    async def send(self, *envelopes: Envelope[Any]) -> None:
        """Send envelopes, fire and forget. All are checked before any is sent:
        an unknown entity type or a message of the wrong class raises and
        nothing is sent."""

    @abstractmethod
    async def call(self, envelope: Envelope[S]) -> S:
        """Send one envelope and return the target's state after handling it.

        Raises `ActivationError` if `activate` raised (the entity keeps its
        state; the message is in the dead letters)."""

    @abstractmethod
    async def state(self, ref: Ref[Any, S]) -> S:
        """The entity's committed state, without activating it (its `init`
        state if it never received a message)."""

    @abstractmethod
    def follow(self, ref: Ref[Any, S]) -> AsyncIterator[S]:
        """Yield the current state, then every committed state after it, in
        order, for as long as the caller iterates (until the ecosystem closes)."""

    @abstractmethod
    async def dead_letters(self) -> list[DeadLetter]:
        """Messages whose activation raised, oldest first."""

    @abstractmethod
    async def redeliver(self, dead_letter: DeadLetter) -> None:
        """Send a dead letter's message to its entity again (after a fix); it
        leaves the dead letters. Raises if it is not (or no longer) one of
        this ecosystem's dead letters, or if its message cannot be decoded."""

    @abstractmethod
    async def discard(self, dead_letter: DeadLetter) -> None:
        """Forget a dead letter without delivering its message."""

    @abstractmethod
    async def settle(self) -> None:
        """Wait until no entity has mail ready (delayed envelopes not counted).
        Useful in tests after fire-and-forget `send`s."""
