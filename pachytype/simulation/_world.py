"""The simulated world and its one pure transition: deliver (or drop, or
duplicate) one message, or move the virtual clock to the next timer.

Design note
-----------
* A `World` is an immutable snapshot: the states of the entities that were
  activated, the messages in flight per *channel* (sender -> target), the
  timers of delayed envelopes, the virtual time and the fault budgets left,
  and the events of event-sourced entities (what `exhaust` needs to treat
  events as part of an outcome; `key()` already tells worlds apart by them).
  A step builds a new world and never changes the old one, so searches can
  keep many worlds and compare them by `key()`.
* Channels are FIFO, which is the delivery promise every ecosystem keeps
  (per sender -> receiver pair, messages arrive in send order). The
  `reorder` fault lifts it: any message in flight may go next.
* An `Event` names a transition by (kind, channel, position in the channel).
  The name stays valid while the event stays enabled: only events at the
  same target take messages out of a channel to it, sends only append.
  The explorer's sleep sets rely on that.
* Two events are *independent* (they commute and neither disables the
  other) when they act on different targets and do not both spend the
  shared fault budget. The clock tick depends on everything; it is only
  enabled when nothing else is, because activations take no virtual time
  (with `Faults(late=True)` messages may be late: the tick is enabled
  while messages are in flight too, so a timer may fall due first).
* Keyed timers (`pachytype._core.timers`): a keyed envelope removes the
  pending timer of its `(target, key)` from `timers`, a `CancelTimer`
  removes it and sends nothing; a ticked timer is in a channel, delivered.
* `init`/`activate` are the user's pure functions, run exactly as the other
  ecosystems run them, so states are the same values. A raise is returned
  as data (a `Step` with `error`), so each caller decides: stop with the
  trace, or keep the state and go on as a dead letter.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, Final, NamedTuple

from attrs import define, evolve, field

from pachytype._address import Address, CancelTimer, Envelope, Key, make_cancel, make_envelope
from pachytype._codec import Codec
from pachytype._core.envelopes import check_outside, check_returned
from pachytype._core.timers import CANCEL, reschedule
from pachytype._core.turn import Turn, run_turn
from pachytype._registry import EntityType, Registry
from pachytype.simulation._faults import NO_FAULTS, Faults
from pachytype.simulation._trace import Kind, Outcome, Step, outcome_of

Channel = tuple[Key | None, Key]
"""(sender, target); the sender is None for envelopes sent from outside."""

Timer = tuple[float, Channel, object, str | None]
"""A delayed message: (due virtual time in seconds, channel, message, timer key)."""

Routed = tuple[Key, object, float, str | None]
"""An envelope on its way: (target, message or `CANCEL`, delay, timer key)."""


class Event(NamedTuple):
    """One possible transition of a world (a named tuple: cheap to hash)."""

    kind: Kind
    channel: Channel | None = None
    position: int = 0


TICK: Final = Event(Kind.TICK)


def independent(a: Event, b: Event) -> bool:
    """Whether `a` and `b` commute and neither disables the other."""
    if a.channel is None or b.channel is None:
        return False
    if a.channel[1] == b.channel[1]:
        return False
    return a.kind is Kind.DELIVER or b.kind is Kind.DELIVER


class Context:
    """What steps need besides the world: the registry and the addresses seen.

    Addresses are interned by key (a cache, not state), so worlds hold plain
    keys and traces can still show the refs."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.types = registry.types
        self.addresses: dict[Key, Address[Any]] = {}
        self.codec = Codec(registry)

    def turn(self, target: Key, state: object, message: object, events_before: int = 0) -> Turn:
        """`target` handles `message` in `state`, by the rules every ecosystem
        keeps (`pachytype._core.turn`): its new state (or its events, for an
        event-sourced entity that has `events_before` so far) and the
        envelopes it sent must be storable, as on a durable ecosystem."""
        etype = self.etype(target)
        codec = self.codec
        name, version = etype.name, etype.state_version

        def store(new_state: object) -> object:
            return codec.decode_state(name, target[1], codec.encode_state(name, new_state), version)

        def store_event(event: object) -> object:
            return codec.decode_event(name, target[1], codec.encode_event(name, event, target[1]))

        if etype.event_sourced:
            return run_turn(
                etype,
                self.addresses[target],
                state,
                (message,),
                deque(),
                self.route,
                store_event=store_event,
                events_before=events_before,
                keep_events=True,
            )
        return run_turn(
            etype, self.addresses[target], state, (message,), deque(), self.route, store_state=store
        )

    def route(self, sender: Address[Any], env: object) -> Routed:
        """Check an envelope returned by `sender`'s activate, as the runtime does."""
        to, etype, message, delay, key = check_returned(self.registry, sender, env)
        if message is not CANCEL:
            self.codec.encode_message(etype.name, message)  # raises if it could not be stored
        self.addresses.setdefault(to.key, to)
        return to.key, message, delay, key

    def resolve(self, envelope: Envelope[Any]) -> Routed:
        """Check an envelope sent from outside (raises like every ecosystem's `send`)."""
        to, etype, message, delay, key = check_outside(self.registry, envelope)
        self.codec.encode_id(etype.name, to._id)  # what a durable ecosystem refuses at send,
        self.codec.encode_message(etype.name, message)  # this one refuses too
        self.addresses.setdefault(to.key, to)
        return to.key, message, delay, key

    def etype(self, key: Key) -> EntityType:
        return self.types[key[0]]

    def init_state(self, key: Key) -> object:
        """The state of an entity never activated (raises if its `init` does)."""
        return self.etype(key).instance.init(key[1])


def freeze(value: object) -> Hashable:
    """`value` if hashable, else a stand-in that compares by repr (for dedup only)."""
    try:
        hash(value)
    except TypeError:
        return ("<unhashable>", type(value).__qualname__, repr(value))
    return value  # hashable: checked just above


@define(eq=False)
class World:
    """A snapshot of a simulated system. Never mutated once built (steps build
    new worlds); not frozen only because that makes building one slower."""

    states: Mapping[Key, object]
    channels: Mapping[Channel, tuple[object, ...]]
    timers: tuple[Timer, ...] = ()
    now: float = 0.0
    drops: int = 0
    duplicates: int = 0
    reorder: bool = False
    events: Mapping[Key, tuple[object, ...]] = field(factory=dict)
    """Each event-sourced entity's events, in order (part of its outcome)."""
    late: bool = False
    """Messages may be late: timers may fall due while messages are in flight."""

    @classmethod
    def empty(cls, faults: Faults = NO_FAULTS) -> World:
        return cls({}, {}, (), 0.0, faults.drop, faults.duplicate, faults.reorder, {}, faults.late)

    @property
    def quiescent(self) -> bool:
        """Nothing in flight and no timer set: the system is done."""
        return not self.channels and not self.timers

    def key(self) -> Hashable:
        """Equal for worlds that will behave the same (the explorer's dedup key).

        Time is relative: entities cannot read the clock, so two worlds that
        differ only by when they are (timers due equally far ahead) behave
        the same. A reminder loop that comes back to the same states is
        then a cycle of worlds, which liveness checks look for."""
        states: frozenset[tuple[Key, Hashable]]
        channels: frozenset[tuple[Channel, Hashable]]
        timers: Hashable
        now = self.now
        try:
            states = frozenset(self.states.items())  # raises TypeError if unhashable
            channels = frozenset(self.channels.items())
            timers = tuple((t[0] - now, *t[1:]) for t in self.timers) if now else self.timers
            hash(timers)
        except TypeError:  # an unhashable state or message: compare those by repr
            states = frozenset((k, freeze(s)) for k, s in self.states.items())
            channels = frozenset((c, freeze(m)) for c, m in self.channels.items())
            timers = freeze(tuple((t[0] - now, *t[1:]) for t in self.timers))
        if self.events:
            # Two worlds with equal states but different events are different
            # outcomes: never merge them (events are values: hashable attrs classes).
            events = frozenset((k, freeze(e)) for k, e in self.events.items())
            return (states, channels, timers, self.drops, self.duplicates, events)
        return (states, channels, timers, self.drops, self.duplicates)

    def outcome_key(self) -> Hashable:
        """Equal for worlds whose entities all have equal states and whose
        event-sourced entities kept equal events (events are part of an
        outcome: the same state reached by other events is another outcome)."""
        try:
            states = frozenset(self.states.items())
        except TypeError:
            states = frozenset((k, freeze(s)) for k, s in self.states.items())
        if not self.events:
            return states
        return states, frozenset((k, freeze(e)) for k, e in self.events.items() if e)

    def outcome(self, addresses: Mapping[Key, Address[Any]]) -> Outcome:
        """The outcome of this world: its states and its events, by address."""
        return outcome_of(self.states, addresses, self.events)

    def with_faults(self, faults: Faults) -> World:
        """This world with fresh fault budgets."""
        return evolve(
            self,
            drops=faults.drop,
            duplicates=faults.duplicate,
            reorder=faults.reorder,
            late=faults.late,
        )

    def pending(self) -> int:
        """Messages in flight or waiting on a timer."""
        return sum(len(m) for m in self.channels.values()) + len(self.timers)


def send(world: World, ctx: Context, envelopes: Iterable[Envelope[Any]]) -> World:
    """`world` with `envelopes` sent from outside, in order (all checked first)."""
    routed = [ctx.resolve(env) for env in envelopes]
    channels = dict(world.channels)
    timers = list(world.timers)
    for key, message, delay, tkey in routed:
        _post(channels, timers, world.now, (None, key), message, delay, tkey)
    return evolve(world, channels=channels, timers=tuple(timers))


def enabled(world: World) -> list[Event]:
    """Every transition possible from `world`, in a deterministic order."""
    events: list[Event] = []
    add = events.append
    drops, duplicates = world.drops, world.duplicates
    reorder = world.reorder
    for channel, messages in world.channels.items():
        sender = channel[0]
        if sender is None or sender == channel[1]:
            add(Event(Kind.DELIVER, channel, 0))  # not a network message: no faults
            continue
        for i in range(len(messages)) if reorder else (0,):
            add(Event(Kind.DELIVER, channel, i))
            if drops:
                add(Event(Kind.DROP, channel, i))
            if duplicates:
                add(Event(Kind.DUPLICATE, channel, i))
    if world.timers and (not events or world.late):
        add(TICK)
    return events


def apply(world: World, event: Event, ctx: Context) -> tuple[World, Step]:
    """The world after `event`, and the trace step describing it."""
    new, step, _ = _apply(world, event, ctx, True)
    assert step is not None
    return new, step


def advance(world: World, event: Event, ctx: Context) -> tuple[World, BaseException | None]:
    """The world after `event`, and the error if activation raised (no trace
    step is built: searches replay `apply` for the few traces they show)."""
    new, _, error = _apply(world, event, ctx, False)
    return new, error


_Applied = tuple[World, Step | None, BaseException | None]


def _apply(world: World, event: Event, ctx: Context, record: bool) -> _Applied:
    channel = event.channel
    if channel is None:
        return _tick(world, record)
    messages = world.channels[channel]
    i = event.position
    message = messages[i]
    target = channel[1]
    channels = dict(world.channels)
    kind = event.kind
    duplicates = world.duplicates
    if kind is Kind.DUPLICATE:
        duplicates -= 1  # delivered now, and stays in flight to be delivered again
    else:
        rest = messages[:i] + messages[i + 1 :]
        if rest:
            channels[channel] = rest
        else:
            del channels[channel]
    if kind is Kind.DROP:
        new = World(
            world.states,
            channels,
            world.timers,
            world.now,
            world.drops - 1,
            duplicates,
            world.reorder,
            world.events,
            world.late,
        )
        if not record:
            return new, None, None
        state = world.states.get(target)
        step = Step(
            Kind.DROP,
            world.now,
            _sender(ctx, channel),
            ctx.addresses[target],
            message,
            state,
            state,
            (),
        )
        return new, step, None
    states = world.states
    before: object = None
    to = ctx.addresses[target]
    try:
        before = states[target] if target in states else ctx.init_state(target)
        kept = world.events.get(target, ())
        turn = ctx.turn(target, before, message, len(kept))
        if turn.failures:
            raise turn.failures[0].error
        after = turn.state
        routed: list[Routed] = turn.routed
    except Exception as error:
        failed = World(
            states,
            channels,
            world.timers,
            world.now,
            world.drops,
            duplicates,
            world.reorder,
            world.events,
            world.late,
        )
        if not record:
            return failed, None, error
        step = Step(
            kind,
            world.now,
            _sender(ctx, channel),
            ctx.addresses[target],
            message,
            before,
            before,
            (),
            error,
        )
        return failed, step, error
    now = world.now
    timers = world.timers
    if routed:
        pending = list(timers)
        for key, msg, delay, tkey in routed:
            _post(channels, pending, now, (target, key), msg, delay, tkey)
        timers = tuple(pending)
    new_states = dict(states)
    new_states[target] = after
    appended = tuple(stored for _, _, _, stored in turn.events)
    events = world.events
    if appended:
        events = dict(events)
        events[target] = kept + appended
    drops, reorder, late = world.drops, world.reorder, world.late
    new = World(new_states, channels, timers, now, drops, duplicates, reorder, events, late)
    if not record:
        return new, None, None
    sent = tuple(_shown(ctx.addresses[k], m, d, tk) for k, m, d, tk in routed)
    step = Step(kind, now, _sender(ctx, channel), to, message, before, after, sent, None, appended)
    return new, step, None


def _shown(
    to: Address[Any], message: object, delay: float, tkey: str | None
) -> Envelope[Any] | CancelTimer:
    if message is CANCEL:
        assert tkey is not None
        return make_cancel(to, tkey)
    return make_envelope(to, message, delay, tkey)


def _sender(ctx: Context, channel: Channel) -> Address[Any] | None:
    return None if channel[0] is None else ctx.addresses[channel[0]]


def _tick(world: World, record: bool) -> _Applied:
    """Move the clock to the first timer and put every message due then in flight."""
    now = world.timers[0][0]
    channels = dict(world.channels)
    due = [t for t in world.timers if t[0] <= now]
    for _, channel, message, _key in due:
        channels[channel] = (*channels.get(channel, ()), message)
    timers = world.timers[len(due) :]
    new = World(
        world.states,
        channels,
        timers,
        now,
        world.drops,
        world.duplicates,
        world.reorder,
        world.events,
        world.late,
    )
    step = Step(Kind.TICK, now, None, None, None, None, None, ()) if record else None
    return new, step, None


def advance_clock(world: World, to_time: float) -> World:
    """`world` with its clock at `to_time` (no timer may be due before it)."""
    if world.timers and world.timers[0][0] < to_time:
        raise ValueError("fire the timers due before moving the clock past them")
    return evolve(world, now=max(world.now, to_time))


def _post(
    channels: dict[Channel, tuple[object, ...]],
    timers: list[Timer],
    now: float,
    channel: Channel,
    message: object,
    delay: float,
    tkey: str | None = None,
) -> None:
    if tkey is not None:  # replace (or cancel) the pending timer of this key
        timers[:] = reschedule(timers, channel[1], tkey, _timer_id)
        if message is CANCEL:
            return
    if delay > 0:
        due = now + delay
        # After every timer due at the same time: equal delays fire in send order.
        at = bisect.bisect_right([t[0] for t in timers], due)
        timers.insert(at, (due, channel, message, tkey))
    else:
        channels[channel] = (*channels.get(channel, ()), message)


def _timer_id(timer: Timer) -> tuple[Key, str | None]:
    return timer[1][1], timer[3]
