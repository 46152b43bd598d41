"""One turn: an entity handles a slice of its inbox. Pure: no I/O, no asyncio.

Design note
-----------
Every ecosystem runs `run_turn`; what differs is only what they do with
its result (commit it, show it to followers, answer calls). The rules:

* **Unborn.** An entity with no committed state starts from `init(id)`.
  If `init` raises, each message of the slice becomes a failure with that
  error (state `None`); the entity stays unborn and tries again with its
  next message.
* **All or nothing per message.** `activate` runs against the current
  state; every envelope it returns goes through `route` (checked, and
  encoded by durable ecosystems) before anything of it is kept. If
  `activate` or `route` raises, the state is unchanged, none of its
  envelopes is sent and the message is a failure.
* **Unreadable mail** (`Unreadable`: stored bytes that no longer decode)
  fails at its place in the inbox, so mail before and after it is handled
  in order.
* **Storable state.** With `store_state` (encode, or encode and decode
  back), the final state of the slice must survive it. If it does not, the
  slice is run again one message at a time (activations are pure, so
  running them again is safe) and the message whose new state cannot be
  stored fails with `unstorable`; the others apply.
* **Event-sourced entities** (`EventSourced`): `decide` returns envelopes
  and events, `evolve` is folded over the events; a raise in either, an
  event not of the entity's event classes, or one `store_event` refuses,
  fails the message like a raise in `activate` (none of its events is
  kept). The turn numbers the kept events after `events_before` (the
  entity's count so far) and, when that count crosses a multiple of
  `snapshot_every`, stores a snapshot of the final state (`store_state`);
  a state that cannot be stored only means no snapshot this time (the
  events are the truth; the next crossing tries again).
* **Recent messages.** `recent` (a bounded deque of the entity's latest
  messages) is updated in place once the slice is kept (so a slice run
  again one message at a time never notes a message twice); a failure
  carries a snapshot of it that ends with the failing message (OTP's "last
  message received").

Trade-off: `store_state` runs once per slice, not once per message, so the
common case pays one encode per turn; the rare failure pays a re-run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final

from pachytype._address import Address
from pachytype._core.envelopes import Route
from pachytype._errors import PachytypeError
from pachytype._registry import EntityType

RECENT: Final = 10
"""How many recent messages a dead letter keeps."""


class _Unborn:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNBORN"


UNBORN: Final[Any] = _Unborn()
"""In place of a state: the entity has none committed (its `init` applies)."""


class Unreadable:
    """Stored mail that no longer decodes, kept at its place in its entity's
    inbox: it fails (and becomes a dead letter with its raw bytes) in turn."""

    __slots__ = ("error", "payload")

    def __init__(self, payload: bytes, error: Exception) -> None:
        self.payload = payload
        self.error = error

    def __repr__(self) -> str:
        return f"Unreadable({self.payload!r})"


class Failure:
    """A message of the slice that failed: the entity kept `state`."""

    __slots__ = ("error", "index", "message", "recent", "state")

    def __init__(
        self,
        index: int,
        message: object,
        error: Exception,
        state: object,
        recent: tuple[object, ...],
    ) -> None:
        self.index = index
        self.message = message
        self.error = error
        self.state = state
        """The state the message was handled in (None if `init` raised)."""
        self.recent = recent

    def __repr__(self) -> str:
        return f"Failure({self.index}, {self.message!r}, {self.error!r})"


class Watch:
    """Where the running turn is, for the activation budget's watchdog
    (`pachytype._budget`) to read: plain fields, written on the hot path.

    `seq` counts activations started; `inside` is true while user code
    (`init`/`activate`) runs; `entity`, `id` and `budget` name the turn.
    """

    __slots__ = ("budget", "entity", "flagged", "id", "inside", "seq")

    def __init__(self) -> None:
        self.seq = 0
        self.inside = False
        self.flagged = -1
        self.budget = 0.0
        self.entity = ""
        self.id: object = None


WATCH: Final = Watch()
"""The one watch of this process: one activation runs at a time per thread,
and the budget is enforced on the main thread (see `pachytype._budget`)."""


class Turn:
    """What a slice did.

    * `state`: the state after the slice (the one given, or UNBORN, if no
      message changed it; see `changed`);
    * `stored`: `store_state(state)` when it changed and a `store_state` was given;
    * `routed`: what `route` returned for each envelope sent, in order;
    * `failures`: the failed messages, in order;
    * `states`: with `keep_states`, the state after each message (failed
      ones repeat the state before them), for calls and followers;
    * event-sourced entities only: `events`, the kept events as
      `(message index, sequence number, event, stored form)`; `seq`, the
      entity's event count after the slice; `snapshot`, the stored form of
      the final state when a snapshot is due (else None).
    """

    __slots__ = (
        "changed",
        "events",
        "failures",
        "routed",
        "seq",
        "snapshot",
        "state",
        "states",
        "stored",
    )

    def __init__(self, state: object, keep_states: bool) -> None:
        self.state = state
        self.changed = False
        self.stored: object = None
        self.routed: list[Any] = []
        self.failures: list[Failure] = []
        self.states: list[object] | None = [] if keep_states else None
        self.events: list[tuple[int, int, object, object]] = []
        self.seq = 0
        self.snapshot: object = None

    def outcome(self, index: int) -> Failure | None:
        """The failure of message `index`, if it failed (failures are few: a scan)."""
        for failure in self.failures:
            if failure.index == index:
                return failure
        return None


StoreState = Callable[[object], object]
"""Prepare a new state for storage (encode it); raising means it cannot be stored."""

StoreEvent = Callable[[object], object]
"""Prepare an event for storage (encode it); raising means it cannot be stored."""


def run_turn(
    etype: EntityType,
    address: Address[Any],
    state: object,
    messages: Sequence[object],
    recent: deque[object],
    route: Route,
    *,
    store_state: StoreState | None = None,
    keep_states: bool = False,
    budget: float = 0.0,
    store_event: StoreEvent | None = None,
    events_before: int = 0,
    keep_events: bool = False,
) -> Turn:
    """Handle `messages` (in order) at `address`, starting from `state` (or UNBORN).

    `budget`: seconds each `init`/`activate` may run (0: not watched).
    Event-sourced entities, with `keep_events` (an ecosystem that stores
    events): `store_event` encodes each event, `events_before` is the
    entity's event count so far (see the module's design note). Without it
    they run as state-stored entities (`EventSourced.activate`: decide, then
    fold; the events are not kept)."""
    watch = WATCH
    watch.budget = etype.instance.activation_budget or budget
    watch.entity = etype.name
    watch.id = address._id
    if keep_events and etype.event_sourced:
        return _run_events(
            etype,
            address,
            state,
            messages,
            recent,
            route,
            keep_states,
            store_event,
            store_state,
            events_before,
        )
    turn = _run(etype, address, state, messages, recent, route, keep_states)
    if store_state is not None and turn.changed:
        try:
            turn.stored = store_state(turn.state)
        except Exception as error:
            if len(messages) == 1:
                return _unstorable_turn(
                    etype, address, state, messages[0], recent, error, keep_states
                )
            return _one_by_one(
                etype, address, state, messages, recent, route, store_state, keep_states
            )
    recent.extend(messages)  # a bounded deque keeps the last ones
    return turn


def _window(recent: deque[object], messages: Sequence[object], end: int) -> tuple[object, ...]:
    """`recent` as it reads once `messages[:end]` are noted (without noting them)."""
    size = recent.maxlen
    if size is None:
        return (*recent, *messages[:end])
    if end >= size:
        return tuple(messages[end - size : end])
    return (*recent, *messages[:end])[-size:] if size else ()


def _run(
    etype: EntityType,
    address: Address[Any],
    state: object,
    messages: Sequence[object],
    recent: deque[object],
    route: Route,
    keep_states: bool,
) -> Turn:
    watch = WATCH
    if state is UNBORN:
        try:
            watch.seq += 1
            watch.inside = True
            state = etype.instance.init(address._id)
            watch.inside = False
        except Exception as error:
            watch.inside = False
            return _init_failed(messages, recent, error, keep_states)
    turn = Turn(state, keep_states)
    states = turn.states
    routed = turn.routed
    activate = etype.instance.activate
    changed = False
    failed: Exception
    for i, message in enumerate(messages):
        if type(message) is Unreadable:
            failed = message.error
        else:
            try:
                watch.seq += 1
                watch.inside = True
                envelopes, new_state = activate(message, state)
                watch.inside = False
                if envelopes:
                    routed.extend([route(address, env) for env in envelopes])
            except Exception as error:
                watch.inside = False
                failed = error
            else:
                state = new_state
                changed = True
                if states is not None:
                    states.append(state)
                continue
        turn.failures.append(Failure(i, message, failed, state, _window(recent, messages, i + 1)))
        if states is not None:
            states.append(state)
    turn.changed = changed
    turn.state = state
    return turn


def _init_failed(
    messages: Sequence[object], recent: deque[object], error: Exception, keep_states: bool
) -> Turn:
    turn = Turn(UNBORN, keep_states)
    for i, message in enumerate(messages):
        turn.failures.append(Failure(i, message, error, None, _window(recent, messages, i + 1)))
        if turn.states is not None:
            turn.states.append(None)
    return turn


def _unstorable_turn(
    etype: EntityType,
    address: Address[Any],
    state: object,
    message: object,
    recent: deque[object],
    error: Exception,
    keep_states: bool,
) -> Turn:
    recent.append(message)
    turn = Turn(state, keep_states)
    # The message was handled in the init state (init cannot raise here: it
    # just ran to produce the unstorable state), as a message that raises is.
    kept = etype.instance.init(address._id) if state is UNBORN else state
    turn.failures.append(
        Failure(0, message, unstorable(etype, address, error), kept, tuple(recent))
    )
    if turn.states is not None:
        turn.states.append(kept)
    return turn


def _one_by_one(
    etype: EntityType,
    address: Address[Any],
    state: object,
    messages: Sequence[object],
    recent: deque[object],
    route: Route,
    store_state: StoreState,
    keep_states: bool,
) -> Turn:
    """Run the slice again message by message, to find the unstorable state(s)."""
    whole = Turn(state, keep_states)
    for i, message in enumerate(messages):
        one = run_turn(
            etype,
            address,
            whole.state,
            [message],
            recent,
            route,
            store_state=store_state,
            keep_states=keep_states,
            budget=WATCH.budget,
        )
        whole.routed.extend(one.routed)
        for failure in one.failures:
            failure.index = i
            whole.failures.append(failure)
        if whole.states is not None and one.states is not None:
            whole.states.extend(one.states)
        if one.changed:
            whole.state = one.state
            whole.stored = one.stored
            whole.changed = True
    return whole


def unstorable(etype: EntityType, address: Address[Any], error: Exception) -> PachytypeError:
    """The failure of a message whose new state cannot be stored."""
    failure = PachytypeError(
        f"entity {etype.name!r} (id {address._id!r}) returned a new state that cannot be "
        f"stored ({error}); its state is unchanged. Make the state a value of its "
        f"declared state type"
    )
    failure.__cause__ = error
    return failure


def _run_events(
    etype: EntityType,
    address: Address[Any],
    state: object,
    messages: Sequence[object],
    recent: deque[object],
    route: Route,
    keep_states: bool,
    store_event: StoreEvent | None,
    store_state: StoreState | None,
    seq: int,
) -> Turn:
    """The turn of an event-sourced entity: decide, fold evolve, keep the events."""
    watch = WATCH
    before = seq
    if state is UNBORN:
        try:
            watch.seq += 1
            watch.inside = True
            state = etype.instance.init(address._id)
            watch.inside = False
        except Exception as error:
            watch.inside = False
            turn = _init_failed(messages, recent, error, keep_states)
            recent.extend(messages)
            turn.seq = seq
            return turn
    turn = Turn(state, keep_states)
    states = turn.states
    routed = turn.routed
    kept_events = turn.events
    instance = etype.instance
    decide = instance.decide  # type: ignore[attr-defined]
    evolve = instance.evolve  # type: ignore[attr-defined]
    allowed = etype.event_set
    noted = 0
    failed: Exception
    for i, message in enumerate(messages):
        if type(message) is Unreadable:
            failed = message.error
        else:
            try:
                watch.seq += 1
                watch.inside = True
                envelopes, events = decide(message, state)
                new_state = state
                for event in events:
                    if allowed and type(event) not in allowed:
                        raise wrong_event(etype, address, event)
                    new_state = evolve(new_state, event)
                watch.inside = False
                stored = [store_event(e) for e in events] if store_event is not None else events
                sent = [route(address, env) for env in envelopes] if envelopes else ()
            except Exception as error:
                watch.inside = False
                failed = error
            else:
                routed.extend(sent)
                for event, form in zip(events, stored, strict=True):
                    seq += 1
                    kept_events.append((i, seq, event, form))
                if stored:
                    state = new_state
                    turn.changed = True
                if states is not None:
                    states.append(state)
                continue
        recent.extend(messages[noted : i + 1])
        noted = i + 1
        turn.failures.append(Failure(i, message, failed, state, tuple(recent)))
        if states is not None:
            states.append(state)
    recent.extend(messages[max(noted, len(messages) - RECENT) :])
    turn.state = state
    turn.seq = seq
    every: int = etype.entity.snapshot_every  # type: ignore[attr-defined]
    if store_state is not None and every and seq // every > before // every:
        try:
            turn.snapshot = store_state(state)
        except Exception:
            # No snapshot this time: the events keep the truth (see the design note).
            turn.snapshot = None
    return turn


def wrong_event(etype: EntityType, address: Address[Any], event: object) -> PachytypeError:
    """The failure of a message whose `decide` returned something not an event."""
    expected = " | ".join(sorted(c.__qualname__ for c in etype.events))
    return PachytypeError(
        f"entity {etype.name!r} (id {address._id!r}): decide returned "
        f"{type(event).__qualname__} ({event!r}) as an event, expected one of {expected}; "
        f"return only the entity's event classes"
    )
