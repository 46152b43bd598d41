"""The runtime core: mailboxes, activation, dead letters, calls and followers.

Design note
-----------
Rules this module keeps:

* **One dispatcher, no task per entity.** Entities with mail sit in one
  ready queue; a single asyncio task pops an entity, runs `activate` over
  a bounded slice of its inbox, and moves on. That is what makes "at most
  one activation of an entity at a time" trivially true in one process,
  and it is ~10x cheaper than a task plus an `asyncio.Queue` per actor.
* **All or nothing per activation.** `activate` runs against the current
  state; its envelopes are validated before anything is applied. If it (or
  a returned envelope) is bad, the state is left as it was and the message
  becomes a dead letter with the entity's recent messages.
* **Passivation.** An entity's live record (inbox, recent messages) exists
  only while it has mail; its state lives in a plain dict of states. A
  million distinct ids cost a million states, never a million records;
  the recent messages of the last `_RECENT_KEPT` idle entities are kept
  for dead letters, older ones are forgotten.
* **Fairness.** Each turn handles at most `_SLICE` messages of one entity
  and the dispatcher yields to the event loop every `_TURN` activations, so
  `send`/`call`/`follow` callers are never starved by a busy system.
* **Calls run inline when the system is idle.** A `call` to an entity with
  no mail, while no entity is ready, activates in the caller's task (no
  task switch); callers still yield to the loop regularly (InMemory.call).
* **Followers and calls are cheap when unused.** The hot path pays one
  truthiness test for followers and one `is None` test for call futures.

Durable ecosystems reuse this core through `pachytype._runtime.durable.DurableRuntime`
(a subclass: same checks, routing, followers and dead-letter capture), which
adds a `Store` (`pachytype._store`) and group commits: effects become
visible only after their commit. InMemory keeps this module's direct path,
untouched, so it pays nothing for durability.

Trade-off: activations run on the event loop thread. They are pure and
short by contract; a slow `activate` delays every entity of the ecosystem.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Hashable, Iterable
from typing import Any, Final

from pachytype._address import Address, Envelope, Key, _Envelope, make_ref, not_an_envelope
from pachytype._address import Ref as _Ref
from pachytype._budget import DEFAULT_BUDGET, watch_activations
from pachytype._clock import Clock, SystemClock, Timer
from pachytype._codec import Codec
from pachytype._core.envelopes import Checked, Route, check_outside, check_returned, checker
from pachytype._core.timers import CANCEL, KeyedTimers, timer_dropped
from pachytype._core.turn import RECENT, UNBORN, Failure, StoreState, Turn, run_turn
from pachytype._deadletter import DeadLetter
from pachytype._errors import ActivationError, EcosystemClosedError, InitError, PachytypeError
from pachytype._events import MemoryLog
from pachytype._inbox import state_kept
from pachytype._registry import EntityType, Registry

_SLICE: Final = 64
"""Messages one entity handles per turn before others get theirs."""

_TURN: Final = 2048
"""Activations between yields to the event loop."""

_RECENT: Final = RECENT

MAX_BACKLOG: Final = 100_000
"""Default number of queued messages above which an outside `send` waits."""

_RECENT_KEPT: Final = 10_000
"""How many idle entities keep their recent messages (least recently active go first)."""

_CLOSED: Final = object()


class _Call:
    """An inbox entry whose sender awaits the state after it (plain messages
    are stored bare: one allocation less per fire-and-forget message)."""

    __slots__ = ("fut", "message")

    def __init__(self, message: object, fut: asyncio.Future[Any]) -> None:
        self.message = message
        self.fut = fut


class _Live:
    """An entity with mail: its inbox and recent messages. Dropped when idle."""

    __slots__ = ("address", "calls", "etype", "inbox", "key", "recent", "scheduled")

    def __init__(
        self, key: Key, address: Address[Any], etype: EntityType, recent: deque[object] | None
    ) -> None:
        self.key = key
        self.address = address
        self.etype = etype
        self.inbox: deque[object] = deque()  # messages, or _Call for `call`s
        self.recent: deque[object] = deque(maxlen=_RECENT) if recent is None else recent
        self.scheduled = False
        self.calls = 0  # `_Call`s in the inbox: turns without any skip unwrapping


class Runtime:
    """The in-process engine every ecosystem drives (InMemory uses it as is)."""

    def __init__(
        self,
        registry: Registry,
        *,
        codec: Codec | None = None,
        max_backlog: int = MAX_BACKLOG,
        activation_budget: float = DEFAULT_BUDGET,
        clock: Clock | None = None,
    ) -> None:
        self.registry = registry
        self.clock: Clock = SystemClock() if clock is None else clock
        self.activation_budget = activation_budget
        self._codec = codec
        self._routing: Route = checker(registry) if codec is None else self._round_trip_route
        self.max_backlog = max_backlog
        self._backlog = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self.states: dict[Key, Any] = {}
        self._live: dict[Key, _Live] = {}
        self._recent: OrderedDict[Key, deque[object]] = OrderedDict()
        self._ready: deque[_Live] = deque()
        self._followers: dict[Key, list[asyncio.Queue[object]]] = {}
        self._dead: list[DeadLetter] = []
        self._dead_seq = itertools.count(1)
        self._timers: set[Timer] = set()
        self._keyed: KeyedTimers[tuple[Timer, asyncio.Future[Any] | None]] = KeyedTimers()
        """Pending keyed timers (`pachytype._core.timers`)."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self.activations = 0
        self.log = MemoryLog()
        """The events of event-sourced entities (`pachytype._events`)."""

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Start the dispatcher on the running loop."""
        _ = self.registry.types  # resolve now: a broken registry fails at open
        watch_activations()
        self._task = asyncio.get_running_loop().create_task(
            self._dispatch(), name=f"pachytype dispatcher ({self.registry.package})"
        )

    async def stop(self) -> None:
        """Stop delivering; pending calls fail, followers end."""
        task, self._task = self._task, None
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._keyed.clear()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        closed = EcosystemClosedError("the ecosystem closed before this message was handled")
        for live in self._live.values():
            for item in live.inbox:
                if type(item) is _Call and not item.fut.done():
                    item.fut.set_exception(closed)
        self._live.clear()
        self._ready.clear()
        for queues in self._followers.values():
            for q in queues:
                q.put_nowait(_CLOSED)
        self._followers.clear()
        self.log.signal.close()
        self._drained.set()  # waiting senders wake up and find the ecosystem closed

    async def backpressure(self) -> None:
        """Wait while more than `max_backlog` messages are queued (outside `send`s call this)."""
        while self._backlog > self.max_backlog:
            self._drained.clear()
            await self._drained.wait()
            self._check_open()

    def _check_open(self) -> None:
        if self._task is None:
            raise EcosystemClosedError(
                "the ecosystem is not open: use `async with InMemory(REGISTRY) as eco:`"
            )

    # -- entry points --------------------------------------------------------

    def resolve(self, envelope: Envelope[Any]) -> Checked:
        """Check an envelope from outside: known entity type, right message class."""
        return check_outside(self.registry, envelope)

    # -- the codec round trip (InMemory's default) -------------------------------

    def _round_trip(self, etype: EntityType, to: Address[Any], message: object) -> object:
        """`message` encoded and decoded back, as a durable ecosystem would store it."""
        codec = self._codec
        assert codec is not None
        codec.encode_id(etype.name, to._id)  # refused at send, as on a durable ecosystem
        return codec.decode_message(etype.name, codec.encode_message(etype.name, message), to._id)

    def _round_trip_route(self, sender: Address[Any], envelope: object) -> Checked:
        to, etype, message, delay, key = check_returned(self.registry, sender, envelope)
        if message is CANCEL:
            return to, etype, message, delay, key
        return to, etype, self._round_trip(etype, to, message), delay, key

    def _stored_state(self, etype: EntityType, address: Address[Any]) -> StoreState:
        codec = self._codec
        assert codec is not None
        name, id, version = etype.name, address._id, etype.state_version

        def store(state: object) -> object:
            return codec.decode_state(name, id, codec.encode_state(name, state), version)

        return store

    def send(self, envelopes: Iterable[Envelope[Any]]) -> None:
        """Validate every envelope, then enqueue them all (all or none)."""
        self._check_open()
        types = self.registry.types
        live_map = self._live
        ready = self._ready
        sent: list[_Envelope] = []
        timed: list[_Envelope] = []
        # One pass that checks and enqueues (this loop runs once per message
        # sent); if an envelope is bad, the ones already enqueued are taken
        # back, so a send is all or nothing. Timers are set after the pass.
        try:
            for env in envelopes:
                if type(env) is not _Envelope:
                    raise not_an_envelope(env)
                to = env._to
                etype = types.get(to._entity_type)
                if etype is None or type(env._message) not in etype.message_set:
                    self.resolve(env)  # raises, with the reason
                    raise AssertionError("unreachable")
                message = env._message
                if self._codec is not None:
                    message = self._round_trip(etype, to, message)
                    env = _Envelope(to, message, env._delay, env._tkey)
                if env._delay > 0 or env._tkey is not None:
                    timed.append(env)  # a timer (keyed: it replaces the pending one)
                    continue
                key = to._key
                live = live_map.get(key)
                if live is None:
                    live = live_map[key] = _Live(key, to, etype, self._recent.pop(key, None))
                live.inbox.append(message)
                sent.append(env)
                if not live.scheduled:
                    live.scheduled = True
                    ready.append(live)
        except BaseException:
            self._take_back(sent)
            raise
        self._backlog += len(sent)  # timers are counted when they fire
        for env in timed:
            to = env._to
            self.deliver(to, types[to._entity_type], env._message, env._delay, None, env._tkey)
        if ready and not self._wake.is_set():
            self._wake.set()
            self._idle.clear()

    def _take_back(self, sent: list[_Envelope]) -> None:
        """Undo the enqueueing of `sent` (all still at the tails of their inboxes)."""
        for env in reversed(sent):
            live = self._live[env._to._key]
            live.inbox.pop()
            if not live.inbox:
                self._ready.remove(live)
                live.scheduled = False
                del self._live[live.key]

    def call(self, envelope: Envelope[Any]) -> asyncio.Future[Any]:
        """Enqueue one envelope; the future gets the target's state after it."""
        self._check_open()
        to, etype, message, delay, key = self.resolve(envelope)
        if self._codec is not None:
            message = self._round_trip(etype, to, message)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if delay == 0 and key is None and not self._ready and to._key not in self._live:
            # Nothing else is waiting to run: activate right here in the
            # caller's task, sparing two task switches per round trip.
            live = _Live(to._key, to, etype, self._recent.pop(to._key, None))
            live.inbox.append(_Call(message, fut))
            live.calls = 1
            live.scheduled = True
            self._live[to._key] = live
            self._backlog += 1
            self._turn(live)
            if self._ready and not self._wake.is_set():
                self._wake.set()
                self._idle.clear()
            return fut
        self.deliver(to, etype, message, delay, fut, key)
        return fut

    def deliver(
        self,
        to: Address[Any],
        etype: EntityType,
        message: object,
        delay: float,
        fut: asyncio.Future[Any] | None,
        key: str | None = None,
    ) -> None:
        """Put a checked message in its target's inbox (now, or after `delay` s);
        with a timer `key`, replace or cancel (message `CANCEL`) the pending
        timer of that key (`pachytype._core.timers`)."""
        timer: tuple[Timer, asyncio.Future[Any] | None] | None = None
        if delay > 0 and message is not CANCEL:

            def fire() -> None:
                assert timer is not None
                self._timers.discard(timer[0])
                if key is not None:
                    self._keyed.fired(to._key, key, timer)
                self.deliver(to, etype, message, 0.0, fut)

            timer = (self.clock.call_at(self.clock.now() + delay, fire), fut)
            self._timers.add(timer[0])
        if key is not None:
            if message is CANCEL:
                old = self._keyed.cancel(to._key, key)
            else:
                old = self._keyed.schedule(to._key, key, timer)
            if old is not None:
                old[0].cancel()
                self._timers.discard(old[0])
                if old[1] is not None and not old[1].done():
                    old[1].set_exception(timer_dropped(to, key, message is CANCEL))
            if message is CANCEL:
                return
        if timer is None:
            self._enqueue(to, etype, message, fut)

    def _enqueue(
        self,
        to: Address[Any],
        etype: EntityType,
        message: object,
        fut: asyncio.Future[Any] | None,
    ) -> None:
        key = to._key
        live = self._live.get(key)
        if live is None:
            live = self._live[key] = _Live(key, to, etype, self._recent.pop(key, None))
        if fut is None:
            live.inbox.append(message)
        else:
            live.inbox.append(_Call(message, fut))
            live.calls += 1
        self._backlog += 1
        if not live.scheduled:
            live.scheduled = True
            self._ready.append(live)
            if not self._wake.is_set():
                self._wake.set()
                self._idle.clear()

    def state(self, ref: Address[Any]) -> Any:
        """The entity's committed state (its `init` state if never activated)."""
        key = ref.key
        try:
            return self.states[key]
        except KeyError:
            etype = self.registry.get(ref.entity_type, ref.id)
            try:
                return etype.instance.init(ref.id)
            except Exception as error:
                raise InitError(etype.name, ref.id, error) from error

    def forget(self, key: Key) -> None:
        """Delete an idle entity's state (an ask's inbox, once its ask is over)."""
        if key not in self._live:
            self.states.pop(key, None)
            self._recent.pop(key, None)

    def follow(self, ref: Address[Any]) -> AsyncIterator[Any]:
        """The current state, then every committed state, until the ecosystem closes."""
        self._check_open()
        self.registry.get(ref.entity_type, ref.id)
        return self._followed(ref, self.state(ref))

    async def _followed(self, ref: Address[Any], current: Any) -> AsyncIterator[Any]:
        """`current`, then each state the dispatcher commits for `ref`.

        The caller reads `current` and calls this with no await in between,
        so no commit can fall between the two."""
        queue: asyncio.Queue[object] = asyncio.Queue()
        queues = self._followers.setdefault(ref.key, [])
        queues.append(queue)
        try:
            yield current
            while True:
                item = await queue.get()
                if item is _CLOSED:
                    return
                yield item
        finally:
            queues.remove(queue)
            if not queues and self._followers.get(ref.key) is queues:
                del self._followers[ref.key]

    def dead_letters(self) -> list[DeadLetter]:
        """Every dead letter so far, oldest first."""
        return list(self._dead)

    def _take_dead(self, dead_letter: DeadLetter, what: str) -> DeadLetter:
        for i, kept in enumerate(self._dead):
            if kept.seq == dead_letter.seq:
                return self._dead.pop(i)
        raise PachytypeError(
            f"cannot {what} dead letter #{dead_letter.seq} for {dead_letter.to!r}: it is not "
            f"among this ecosystem's dead letters (already redelivered or discarded); list "
            f"them again with `await eco.dead_letters()`"
        )

    def resend_dead(self, dead_letter: DeadLetter) -> None:
        """Send a dead letter's message to its entity again; it leaves the dead letters."""
        self._check_open()
        kept = self._take_dead(dead_letter, "redeliver")
        try:
            self.send([_Envelope(kept.to, kept.message, 0.0)])
        except BaseException:
            self._dead.insert(0, kept)
            self._dead.sort(key=lambda d: d.seq)
            raise

    def drop_dead(self, dead_letter: DeadLetter) -> None:
        """Forget a dead letter (its message is not delivered)."""
        self._check_open()
        self._take_dead(dead_letter, "discard")

    async def quiesce(self) -> None:
        """Wait until no entity has mail (delayed envelopes not counted)."""
        while self._ready or self._wake.is_set():
            await self._idle.wait()
            await asyncio.sleep(0)

    # -- the dispatcher ------------------------------------------------------

    async def _dispatch(self) -> None:
        ready = self._ready
        wake = self._wake
        while True:
            if not ready:
                wake.clear()
                self._idle.set()
                await wake.wait()
                continue
            budget = _TURN
            while ready and budget > 0:
                budget -= self._turn(ready.popleft())
            if self._backlog <= self.max_backlog // 2:
                self._drained.set()
            await asyncio.sleep(0)

    def _turn(self, live: _Live) -> int:
        """Handle up to `_SLICE` messages of one entity (`run_turn`); returns how many."""
        key = live.key
        inbox = live.inbox
        batch = [inbox.popleft() for _ in range(min(len(inbox), _SLICE))]
        calls = live.calls
        if calls:
            messages = [item.message if type(item) is _Call else item for item in batch]
            live.calls = calls - sum(1 for item in batch if type(item) is _Call)
        else:
            messages = batch
        followers = self._followers.get(key) if self._followers else None
        etype = live.etype
        if etype.event_sourced:
            return self._event_turn(live, batch, messages, followers, bool(calls))
        turn = run_turn(
            etype,
            live.address,
            self.states.get(key, UNBORN),
            messages,
            live.recent,
            self._routing,
            store_state=self._stored_state(etype, live.address) if self._codec else None,
            keep_states=bool(calls or followers),
            budget=self.activation_budget,
        )
        if turn.changed and (followers or state_kept(etype.name, False)):
            self.states[key] = turn.stored if self._codec else turn.state
        return self._turn_done(live, batch, turn, followers)

    def _event_turn(
        self,
        live: _Live,
        batch: list[object],
        messages: list[object],
        followers: list[asyncio.Queue[object]] | None,
        calls: bool,
    ) -> int:
        """The turn of an event-sourced entity: its events go to `self.log`."""
        etype, address = live.etype, live.address
        codec = self._codec
        store_event = None
        if codec is not None:
            name, id = etype.name, address._id

            def store_event(event: object) -> object:
                return codec.decode_event(name, id, codec.encode_event(name, event, id))

        turn = run_turn(
            etype,
            address,
            self.states.get(live.key, UNBORN),
            messages,
            live.recent,
            self._routing,
            keep_states=calls or bool(followers),
            budget=self.activation_budget,
            store_event=store_event,
            events_before=self.log.count(live.key),
            keep_events=True,
        )
        if turn.changed:
            self.states[live.key] = turn.state
        if turn.events:
            self.log.append(address, [(seq, stored) for _, seq, _, stored in turn.events])
        return self._turn_done(live, batch, turn, followers)

    def _turn_done(
        self,
        live: _Live,
        batch: list[object],
        turn: Turn,
        followers: list[asyncio.Queue[object]] | None,
    ) -> int:
        """Deliver what a turn sent, dead-letter its failures, answer calls and followers."""
        if turn.routed:
            enqueue = self._enqueue
            for to, target_type, msg, delay, key in turn.routed:
                if delay > 0 or key is not None:
                    self.deliver(to, target_type, msg, delay, None, key)
                else:
                    enqueue(to, target_type, msg, None)
        failed = self._failed(live, batch, turn) if turn.failures else ()
        states = turn.states
        if states is not None:
            if turn.changed and self._codec and not live.etype.event_sourced:
                states[-1] = (
                    turn.stored if not failed or len(batch) - 1 not in failed else states[-1]
                )
            for i, item in enumerate(batch):
                if i in failed:
                    continue
                if type(item) is _Call and not item.fut.done():
                    item.fut.set_result(states[i])
                if followers:
                    for q in followers:
                        q.put_nowait(states[i])
        self.activations += len(batch)
        self._backlog -= len(batch)
        return self._after_turn(live, len(batch))

    def _failed(self, live: _Live, batch: list[object], turn: Turn) -> set[int]:
        """Dead-letter the failures of a turn; returns their indexes."""
        failed = set()
        for failure in turn.failures:
            failed.add(failure.index)
            item = batch[failure.index]
            fut = item.fut if type(item) is _Call else None
            self._dead_letter(live, failure, fut)
        return failed

    def _after_turn(self, live: _Live, handled: int) -> int:
        if live.inbox:
            self._ready.append(live)
        else:
            live.scheduled = False
            # Passivate: the state stays in self.states; recent messages stay
            # for a while, so a later dead letter can still show them.
            del self._live[live.key]
            recent = self._recent
            recent[live.key] = live.recent
            if len(recent) > _RECENT_KEPT:
                recent.popitem(last=False)
        return handled

    def _dead_letter(self, live: _Live, failure: Failure, fut: asyncio.Future[Any] | None) -> None:
        message, error = failure.message, failure.error
        self._dead.append(
            DeadLetter.capture(
                next(self._dead_seq), live.address, message, error, failure.state, failure.recent
            )
        )
        if fut is not None and not fut.done():
            activation_error = ActivationError(live.etype.name, live.address._id, message, error)
            activation_error.__cause__ = error
            fut.set_exception(activation_error)


def address_of(etype: EntityType, id: Hashable) -> Address[Any]:
    """A plain ref to `id` of `etype` (library use: decoding, tooling)."""
    return make_ref(_Ref, etype.name, id)
