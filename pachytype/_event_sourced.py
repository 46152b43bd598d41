"""Event-sourced entities: `EventSourced[Id, Msg, Event, State]`, `Decision`
and `@upcast`, the stored-event converters an event-sourced class declares.

Design note
-----------
An event-sourced entity is an entity whose truth is its events: a pure
`decide(msg, state) -> (envelopes, events)` says what happened, a pure
`evolve(state, event) -> state` says what that does to the state. Its state
is never the stored truth: it is `init(id)` folded with every event, and a
*snapshot* (the folded state, stored every `snapshot_every` events,
versioned by `state_version` and upgraded by `@upgrade` like any state)
only saves replaying from the first event. The rules of a turn (decide,
fold, all or nothing per message) live once in `pachytype._core.turn`.

Events are forever: a stored event is decoded by the code of the day. Each
event class has a version, 1 + the number of `@upcast(event=C, from_version=v)`
converters declared for it (they must chain from 1); an event stored at
version v runs the upcasters v, v+1, ... over its raw fields, then is
structured into the class. `pachytype lock` records each event class's shape
and version, and `pachytype check` refuses a changed shape that old events
would not decode into unless an upcaster covers it.

`activate` is defined here (decide, then fold) so that an event-sourced
entity is also a plain entity wherever events are not kept; ecosystems that
keep events go through the core's event-sourced turn instead.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, ClassVar, Generic, TypeAlias, TypeVar

from pachytype._address import CancelTimer, Envelope
from pachytype._entity import Activation, Entity

Id = TypeVar("Id", bound=Hashable)
Msg = TypeVar("Msg")
Ev = TypeVar("Ev")
State = TypeVar("State")
E = TypeVar("E")

Decision: TypeAlias = tuple[Sequence[Envelope[Any] | CancelTimer], Sequence[E]]
"""What `decide` returns: the envelopes to send (and keyed timers to cancel:
`address.cancel_timer(key)`, as from `activate`) and the events that happened."""

RawEvent: TypeAlias = dict[str, Any]
"""An event's fields as stored (unstructured JSON values)."""

SNAPSHOT_EVERY = 100
"""Default number of events between two snapshots of an entity's state."""


class Upcast:
    """A stored-event converter: the raw fields of event class `event` at
    `from_version` in, the raw fields at `from_version + 1` out. Made by
    `@upcast`; collected by the entity class."""

    __slots__ = ("event", "fn", "from_version")

    def __init__(
        self, fn: Callable[[RawEvent], RawEvent], event: type | str, from_version: int
    ) -> None:
        self.fn = fn
        self.event = event if isinstance(event, str) else event.__name__
        self.from_version = from_version

    def __call__(self, raw: RawEvent) -> RawEvent:
        return self.fn(raw)

    def __repr__(self) -> str:
        return f"<upcast {self.fn.__qualname__} of {self.event} from version {self.from_version}>"


def upcast(
    *, event: type | str, from_version: int
) -> Callable[[Callable[[RawEvent], RawEvent]], Upcast]:
    """Declare, inside an event-sourced class, how a stored `event` of
    `from_version` becomes `from_version + 1` (raw fields in, raw fields out,
    no `self`)::

        class Cart(EventSourced[CartId, CartMsg, CartEvent, CartState]):
            @upcast(event=ItemAdded, from_version=1)
            def _quantity(raw: dict[str, Any]) -> dict[str, Any]:
                return {**raw, "quantity": 1}
    """
    if from_version < 1:
        raise ValueError(f"@upcast(from_version=...) takes a version >= 1, got {from_version!r}")

    def wrap(fn: Callable[[RawEvent], RawEvent]) -> Upcast:
        return Upcast(fn, event, from_version)

    return wrap


class EventSourced(Entity[Id, Msg, State], Generic[Id, Msg, Ev, State]):
    """Base class of event-sourced entities: `EventSourced[Id, Msg, Event, State]`.

    Subclasses define `decide` and `evolve` (and optionally `init`,
    `state_version`, `snapshot_every`)::

        class Cart(EventSourced[str, CartMsg, Added | Removed, CartState]):
            def decide(self, msg: CartMsg, state: CartState) -> Decision[Added | Removed]:
                match msg:
                    case Add(item=item):
                        return [], [Added(item)]
                    ...

            def evolve(self, state: CartState, event: Added | Removed) -> CartState:
                ...

    Both must be pure. A message whose `decide` or `evolve` raises changes
    nothing (no event is kept) and goes to the dead letters.
    """

    snapshot_every: ClassVar[int] = SNAPSHOT_EVERY
    """Events between two stored snapshots of the state (0: never snapshot,
    always replay every event)."""

    upcasts: ClassVar[dict[tuple[str, int], Upcast]]
    """`(event class name, from_version) -> Upcast`, collected from `@upcast`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[tuple[str, int], Upcast] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, Upcast):
                    key = (value.event, value.from_version)
                    if key in found and found[key] is not value:
                        raise TypeError(
                            f"entity {cls.__name__}: two @upcast(event={value.event}, "
                            f"from_version={value.from_version}) functions ({name} and "
                            f"{found[key].fn.__name__}); keep one"
                        )
                    found[key] = value
        for event, version in found:
            missing = [v for v in range(1, version) if (event, v) not in found]
            if missing:
                raise TypeError(
                    f"entity {cls.__name__}: the upcasters of event {event} must chain from "
                    f"version 1; add @upcast(event={event}, from_version={missing[0]})"
                )
        cls.upcasts = found
        if cls.snapshot_every < 0:
            raise TypeError(
                f"entity {cls.__name__}: snapshot_every must be >= 0 (0: never), "
                f"got {cls.snapshot_every!r}"
            )

    @classmethod
    def event_version(cls, event: type | str) -> int:
        """The current version of an event class: 1 + its upcasters."""
        name = event if isinstance(event, str) else event.__name__
        return 1 + sum(1 for e, _ in cls.upcasts if e == name)

    def decide(self, msg: Msg, state: State) -> Decision[Ev]:
        """Handle one message: return the envelopes to send and the events."""
        raise NotImplementedError(
            f"entity {type(self).__name__} must define decide(self, msg, state)"
        )

    def evolve(self, state: State, event: Ev) -> State:
        """The state after `event`."""
        raise NotImplementedError(
            f"entity {type(self).__name__} must define evolve(self, state, event)"
        )

    def activate(self, msg: Msg, state: State) -> Activation[State]:
        """`decide`, then fold `evolve` over its events (events not kept)."""
        envelopes, events = self.decide(msg, state)
        for event in events:
            state = self.evolve(state, event)
        return envelopes, state


def is_event_sourced(entity: type[Entity[Any, Any, Any]]) -> bool:
    """Whether an entity class keeps events."""
    return issubclass(entity, EventSourced)
