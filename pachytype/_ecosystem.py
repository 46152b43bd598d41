"""The public face every ecosystem shares: send, call, ask, state, follow, dead letters.

Concrete ecosystems (InMemory, LocalDisk, Postgres, the simulation's) differ
only in where state and mail live; user code and the conformance suite are
written against this.

Design note. What can be built on the others is built here, once, so every
ecosystem has it the same way, Postgres across processes included:

* **Deadlines.** `call`, `ask` and `state` take `timeout=`; the concrete
  ecosystem implements `_call` and `_state` without one. A deadline that
  passes raises `DeadlineError` naming the entity, with the ecosystem's
  own hint (`_late_hint`: a Postgres schema with no live node says so).
  The message is not withdrawn: a timed-out call may still take effect.
* **Asks.** `ask(make)` builds a fresh reply address on the library's
  inbox entity (`pachytype._inbox`, in every registry), follows it, sends
  `make(reply_to)` and returns the first message that arrives there. Only
  `follow` and `send` are used, so it works wherever they do (a
  `node=False` Postgres client in another process too).
* **Workers.** An ecosystem that runs entities (`_hosts_workers`) also
  runs a runner per worker type of its registry (`pachytype._worker_runner`),
  started after `_open` and stopped before `_close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from pachytype._address import Address, Envelope, Ref, Request, make_ref, not_an_envelope, unpack
from pachytype._deadletter import DeadLetter
from pachytype._errors import DeadlineError, PachytypeError
from pachytype._event_sourced import EventSourced
from pachytype._events import StoredEvent
from pachytype._inbox import INBOX, InboxState
from pachytype._registry import EntityType, Registry

if TYPE_CHECKING:
    from pachytype._worker_runner import WorkerHost

S = TypeVar("S")
R = TypeVar("R")
T = TypeVar("T")
E = TypeVar("E")


class Ecosystem(ABC):
    """A running set of entities. Use it as an async context manager::

    async with InMemory(REGISTRY) as eco:
        state = await eco.call(refs.counter("c").increment())
    """

    registry: Registry

    _worker_host: WorkerHost | None = None
    """The runners of this ecosystem's workers while it is open (set per instance)."""

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

    async def open(self) -> None:
        """Start delivering messages (and, where entities run, performing
        the registry's workers' requests)."""
        await self._open()
        if self._hosts_workers():
            from pachytype._worker_runner import WorkerHost  # it imports this module

            host = WorkerHost.start(self)
            if host is not None:
                self._worker_host = host

    async def close(self) -> None:
        """Stop delivering; pending `call`s fail with `EcosystemClosedError`.
        Worker runners stop first: a request being performed is given up and
        performed again after its lease (by this or another node)."""
        host = self._worker_host
        if host is not None:
            self._worker_host = None
            await host.stop()
        await self._close()

    @abstractmethod
    async def _open(self) -> None:
        """Start delivering messages."""

    @abstractmethod
    async def _close(self) -> None:
        """Stop delivering; fail pending calls with `EcosystemClosedError`."""

    def _hosts_workers(self) -> bool:
        """Whether this instance runs entities, and so the workers' runners too
        (a Postgres client, `node=False`, does not)."""
        return True

    async def _late_hint(self) -> str:
        """Text added to a `DeadlineError`: why the answer may be late (e.g. no
        live node); empty if nothing is known. Starts with "; "."""
        return ""

    @abstractmethod
    async def send(self, *envelopes: Envelope[Any]) -> None:
        """Send envelopes, fire and forget. All are checked before any is sent:
        an unknown entity type or a message of the wrong class raises and
        nothing is sent."""

    async def call(self, envelope: Envelope[S], *, timeout: float | None = None) -> S:
        """Send one envelope and return the target's state after handling it.

        Raises `ActivationError` if `activate` raised (the entity keeps its
        state; the message is in the dead letters), and `DeadlineError` if
        `timeout` seconds pass first: the message is still sent and may
        still be handled later (a timed-out call is not withdrawn)."""
        if timeout is None:
            return await self._call(envelope)
        _check_timeout(timeout)
        if not isinstance(envelope, Envelope):
            raise not_an_envelope(envelope)
        to, message, _ = unpack(envelope)
        return await self._within(
            self._call(envelope), timeout, to, f"call ({type(message).__name__})"
        )

    @abstractmethod
    async def _call(self, envelope: Envelope[S]) -> S:
        """`call` without a deadline."""

    async def ask(
        self, make: Callable[[Address[R]], Request[Any, R]], *, timeout: float | None = None
    ) -> R:
        """Send the request `make(reply_to)` builds and return the first
        message sent to `reply_to`, typed by the reply address the message
        declares (`Address[R]`)::

            answer = await eco.ask(
                lambda r: refs.inventory(sku).reserve(qty=1, reply_to=r), timeout=2.0
            )

        `reply_to` is a fresh address of the library's inbox entity, so the
        answer must be a message class of one of the registry's entities.
        Raises `DeadlineError` after `timeout` seconds (the request may still
        be handled: it was sent). Without a timeout, an ask whose target
        never answers (its `activate` raised, say) waits for ever."""
        if timeout is not None:
            _check_timeout(timeout)
        inbox = make_ref(Ref, INBOX, uuid.uuid4().hex)
        envelope = make(cast(Address[R], inbox))
        if not isinstance(envelope, Envelope):
            raise not_an_envelope(envelope)
        to, message, _ = unpack(envelope)
        waiting: Awaitable[R] = self._ask(inbox, envelope)
        if timeout is None:
            return await waiting
        return await self._within(waiting, timeout, to, f"ask ({type(message).__name__})")

    async def _ask(self, inbox: Ref[Any, Any], envelope: Envelope[Any]) -> Any:
        states = cast(AsyncIterator[InboxState], self.follow(inbox))
        try:
            # The first state is read once the watch is in place: only then
            # is the request sent, so the answer cannot slip past unseen.
            state = await anext(states)
            await self.send(envelope)
            while state.reply is None:
                state = await anext(states)
            return state.reply.message
        finally:
            closing = getattr(states, "aclose", None)
            if closing is not None:
                await closing()
            # Answered, timed out or cancelled: the inbox is not needed any more.
            with contextlib.suppress(Exception):
                await self._forget_inbox(inbox)

    async def _forget_inbox(self, inbox: Ref[Any, Any]) -> None:
        """Delete the state of an ask's inbox (`pachytype._inbox`): its ask is over."""
        return None  # an ecosystem that keeps states overrides it

    async def state(self, ref: Ref[Any, S], *, timeout: float | None = None) -> S:
        """The entity's committed state, without activating it (its `init`
        state if it never received a message). `DeadlineError` after `timeout`."""
        if timeout is None:
            return await self._state(ref)
        _check_timeout(timeout)
        return await self._within(self._state(ref), timeout, ref, "state read")

    @abstractmethod
    async def _state(self, ref: Ref[Any, S]) -> S:
        """`state` without a deadline."""

    async def _within(
        self, waiting: Awaitable[T], timeout: float, to: Address[Any], what: str
    ) -> T:
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await waiting
        except TimeoutError:
            if not deadline.expired():
                raise  # a timeout of something inside, not ours
        hint = await self._late_hint()
        raise DeadlineError(
            f"{what} to entity {to.entity_type!r} (id {to.id!r}) got no answer within "
            f"{timeout:g} s{hint}; what was sent may still be handled later (a timed-out "
            f"call or ask is not withdrawn): retry only what is harmless to receive twice",
            to.entity_type,
            to.id,
            timeout,
        )

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

    def events(self, ref: Ref[Any, Any], *, after: int = 0) -> AsyncIterator[tuple[int, Any]]:
        """Yield `(seq, event)` for each event of an event-sourced entity with a
        sequence number above `after` (its events are numbered 1, 2, ...), then
        each event committed later, in order, until the ecosystem closes."""
        raise PachytypeError(
            f"{type(self).__name__} does not keep event streams yet: run event-sourced "
            f"entities on InMemory, LocalDisk or the Simulation"
        )

    def events_of(
        self, entity: type[EventSourced[Any, Any, E, Any]] | str, *, after: int = 0
    ) -> AsyncIterator[StoredEvent[E]]:
        """Yield every committed event of every entity of an event-sourced type
        whose stream position is above `after`, in commit order (each entity's
        events in their order), then each one committed later, until the
        ecosystem closes. Positions survive restarts of durable ecosystems:
        resume with `after=` the last position handled."""
        raise PachytypeError(
            f"{type(self).__name__} does not keep event streams yet: run event-sourced "
            f"entities on InMemory, LocalDisk or the Simulation"
        )


def event_type(
    registry: Registry, entity: type[Any] | str, ref: Ref[Any, Any] | None = None
) -> EntityType:
    """The registered event-sourced type `entity` names (a class or its type
    name); raises naming what was expected."""
    name = entity if isinstance(entity, str) else getattr(entity, "entity_type", repr(entity))
    etype = registry.get(name, None if ref is None else ref.id)
    if not etype.event_sourced:
        raise PachytypeError(
            f"entity {etype.name!r}{'' if ref is None else f' (id {ref.id!r})'} is not "
            f"event-sourced, so it has no events: its class derives from Entity; derive "
            f"it from EventSourced[Id, Msg, Event, State] to keep events"
        )
    return etype


def _check_timeout(timeout: float) -> None:
    if not timeout > 0:  # NaN too
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
