"""The durable dispatcher: the runtime core (`pachytype._runtime`) with a
`Store` underneath, in group commits. LocalDisk runs it on SQLite.

Design note
-----------
Rules, on top of the core's (one dispatcher, pure activations, all or
nothing per activation, fairness, passivation):

* **Effects only after commit.** The dispatcher drains ready entities into
  a `CommitBatch` of plain values (encoded states, new mail, consumed ids,
  dead letters), awaits `Store.commit`, and only then applies the effects:
  new mail enters inboxes, `send`s return, `call`s resolve, followers see
  the new states. Nothing a caller can observe is ever rolled back.
* **Latest state.** While an entity's commit is in flight it is *busy*: it
  is not activated again (its new mail waits in its inbox) until that
  commit is applied, so every activation starts from a committed state.
* **Group commit, pipelined.** While batch k is being written (on the
  store's thread), the dispatcher builds batch k+1 from every other ready
  entity and every `send` that arrived; one commit is in flight at a time,
  so batches commit in the order they were built. A batch is bounded by
  `max_batch` activations; a send waits at most for the commit in flight
  plus its own (no timer-based waiting).
* **Ids.** Message ids come from one counter (resumed from the store), in
  commit order; an entity consumes its mail in id order, so the store keeps
  one consumed cursor per entity (see `pachytype._store`).
* **Memory.** Live records exist only while an entity has mail (as in the
  core). Committed states are cached up to `cache_size` entries (least
  recently committed go first) and re-read from the store when needed.
* **Encoding at the edges.** `send` encodes in the caller's task, so a
  message that cannot be encoded is refused before anything is written; an
  activation's new state and envelopes are encoded in its turn, so an
  encoding failure is that activation's failure (a dead letter).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator, Hashable, Iterable
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from pachytype._address import Address, Envelope, Key, _Envelope, not_an_envelope
from pachytype._deadletter import DeadLetter
from pachytype._errors import ActivationError, EcosystemClosedError, InitError, PachytypeError
from pachytype._registry import EntityType, Registry
from pachytype._runtime import _CLOSED, _RECENT, _RECENT_KEPT, _SLICE, Runtime, address_of
from pachytype._store import CommitBatch, DeadRow, EntityWrite, MailRow, Store, TimerRow

MAX_BATCH: Final = 4096
"""Default bound on activations per group commit."""

CACHE_SIZE: Final = 100_000
"""Default number of committed states kept in memory."""

_GC_EVERY: Final = 64
"""Commits between two `forget_below` sweeps of consumed mail."""

_UNBORN: Final = object()
"""Cached in place of a state: the entity has none stored (its `init` applies)."""


class Codec(Protocol):
    """What the durable runtime needs from `pachytype._codec.Codec`."""

    def encode_id(self, entity_type: str, id: Hashable) -> str: ...
    def decode_id(self, entity_type: str, text: str) -> Hashable: ...
    def encode_message(self, entity_type: str, message: object) -> bytes: ...
    def decode_message(self, entity_type: str, data: bytes) -> object: ...
    def encode_state(self, entity_type: str, state: object) -> bytes: ...
    def decode_state(self, entity_type: str, id: Hashable, data: bytes, version: int) -> object: ...


class _Broken:
    """Cached in place of a state that cannot be loaded (bad data, failed upgrade)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class _Mail:
    """An inbox entry: a message, its id, and the future of a `call`, if any."""

    __slots__ = ("fut", "id", "message")

    def __init__(self, id: int, message: object, fut: asyncio.Future[Any] | None) -> None:
        self.id = id
        self.message = message
        self.fut = fut


class _Live:
    """An entity with mail. `busy`: a commit with its activation is in flight."""

    __slots__ = ("address", "busy", "etype", "id_text", "inbox", "key", "recent", "scheduled")

    def __init__(
        self,
        address: Address[Any],
        etype: EntityType,
        id_text: str,
        recent: deque[object] | None,
    ) -> None:
        self.key = address._key
        self.address = address
        self.etype = etype
        self.id_text = id_text
        self.inbox: deque[_Mail] = deque()
        self.recent: deque[object] = deque(maxlen=_RECENT) if recent is None else recent
        self.scheduled = False
        self.busy = False


class _Out:
    """A checked, encoded message on its way to a commit (not yet numbered)."""

    __slots__ = ("address", "delay", "etype", "fut", "id_text", "message", "payload")

    def __init__(
        self,
        address: Address[Any],
        etype: EntityType,
        id_text: str,
        message: object,
        payload: bytes,
        delay: float,
        fut: asyncio.Future[Any] | None,
    ) -> None:
        self.address = address
        self.etype = etype
        self.id_text = id_text
        self.message = message
        self.payload = payload
        self.delay = delay
        self.fut = fut


class _Timer:
    """A delayed message: stored in the timers table, armed on the loop."""

    __slots__ = ("due", "handle", "id", "out")

    def __init__(self, id: int, out: _Out, due: float) -> None:
        self.id = id
        self.out = out
        self.due = due
        self.handle: asyncio.TimerHandle | None = None


class _Request:
    """An outside `send`/`call`/`redeliver`, acknowledged after its commit."""

    __slots__ = ("ack", "outs", "redeliver")

    def __init__(
        self, outs: list[_Out], ack: asyncio.Future[None] | None, redeliver: int | None = None
    ) -> None:
        self.outs = outs
        self.ack = ack
        self.redeliver = redeliver


class _Turn:
    """What one entity's turn does once committed."""

    __slots__ = ("failures", "live", "results", "state", "states")

    def __init__(self, live: _Live) -> None:
        self.live = live
        self.state: object = _UNBORN  # _UNBORN: unchanged
        self.results: list[tuple[asyncio.Future[Any], object]] = []
        self.failures: list[tuple[asyncio.Future[Any], Exception]] = []
        self.states: list[object] = []


class _Pending:
    """A built batch's in-memory effects, applied after its commit."""

    __slots__ = ("acks", "deliver", "first_id", "timers", "turns")

    def __init__(self, first_id: int) -> None:
        self.first_id = first_id
        self.turns: list[_Turn] = []
        self.deliver: list[tuple[int, _Out]] = []
        self.timers: list[_Timer] = []
        self.acks: list[asyncio.Future[None]] = []

    def futures(self) -> Iterable[asyncio.Future[Any]]:
        yield from self.acks
        for _, out in self.deliver:
            if out.fut is not None:
                yield out.fut
        for timer in self.timers:
            if timer.out.fut is not None:
                yield timer.out.fut
        for turn in self.turns:
            yield from (f for f, _ in turn.results)
            yield from (f for f, _ in turn.failures)


class DurableRuntime(Runtime):
    """The runtime core over a `Store`: group commits, effects after commit."""

    def __init__(
        self,
        registry: Registry,
        store: Store,
        codec: Codec,
        *,
        max_batch: int = MAX_BATCH,
        cache_size: int = CACHE_SIZE,
        name: str = "LocalDisk",
    ) -> None:
        super().__init__(registry)
        self.store = store
        self.codec = codec
        self.max_batch = max_batch
        self.cache_size = cache_size
        self.name = name
        self._cache: dict[Key, object] = {}
        self._dlive: dict[Key, _Live] = {}
        self._dready: deque[_Live] = deque()
        self._incoming: list[_Request] = []
        self._fired: list[_Timer] = []
        self._armed: dict[int, _Timer] = {}
        self._to_load: list[_Live] = []
        self._id_texts: dict[Key, str] = {}
        self._next_id = 1
        self._commits = 0
        self._inflight_first: int | None = None
        self._pending: _Pending | None = None
        self._failure: BaseException | None = None
        self._startup: list[EntityWrite] = []
        self._startup_dead: list[DeadRow] = []

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        """Open the store, put recovered mail back in inboxes, arm timers, start."""
        _ = self.registry.types
        recovery = await self.store.open(self.registry.fingerprint)
        self._next_id = recovery.next_id
        for row in recovery.mail:
            self._recover_mail(row)
        for timer_row in recovery.timers:
            self._recover_timer(timer_row)
        self.start()

    async def stop(self) -> None:
        """Stop the dispatcher, fail what waits, close the store."""
        await super().stop()
        closed = EcosystemClosedError(
            f"the ecosystem closed before this message was handled; it is stored and "
            f"will be delivered when the {self.name} database is opened again"
        )
        self._fail_waiting(closed)
        self._dlive.clear()
        self._dready.clear()
        await self.store.close()

    def _fail_waiting(self, error: BaseException) -> None:
        futures: list[asyncio.Future[Any]] = []
        for live in self._dlive.values():
            futures.extend(m.fut for m in live.inbox if m.fut is not None)
        for request in self._incoming:
            if request.ack is not None:
                futures.append(request.ack)
            futures.extend(o.fut for o in request.outs if o.fut is not None)
        for timer in [*self._armed.values(), *self._fired]:
            if timer.handle is not None:
                timer.handle.cancel()
            if timer.out.fut is not None:
                futures.append(timer.out.fut)
        if self._pending is not None:
            futures.extend(self._pending.futures())
        self._incoming.clear()
        self._armed.clear()
        self._fired.clear()
        self._pending = None
        for fut in futures:
            if not fut.done():
                fut.set_exception(error)

    def _check_open(self) -> None:
        if self._failure is not None:
            raise PachytypeError(
                f"the {self.name} store failed ({type(self._failure).__name__}: "
                f"{self._failure}); close the ecosystem and open it again"
            ) from self._failure
        if self._task is None:
            raise EcosystemClosedError(
                f"the ecosystem is not open: use `async with {self.name}(path, REGISTRY) as eco:`"
            )

    # -- recovery ------------------------------------------------------------

    def _recover_mail(self, row: MailRow) -> None:
        mail_id, type_name, id_text, payload = row
        try:
            etype = self.registry.get(type_name, id_text)
            id = self.codec.decode_id(type_name, id_text)
            message = self.codec.decode_message(type_name, payload)
            etype.check_message(id, message)
        except Exception as error:
            # Unreadable stored mail is kept as a dead letter, never dropped.
            self._startup_dead.append(_dead_row(type_name, id_text, payload, error, None, 0, ()))
            self._startup.append(EntityWrite(type_name, id_text, None, 0, (mail_id,)))
            return
        address = address_of(etype, id)
        self._id_texts[address._key] = id_text
        self._put(address, etype, id_text, _Mail(mail_id, message, None))

    def _recover_timer(self, row: TimerRow) -> None:
        timer_id, type_name, id_text, payload, due = row
        try:
            etype = self.registry.get(type_name, id_text)
            id = self.codec.decode_id(type_name, id_text)
            message = self.codec.decode_message(type_name, payload)
            etype.check_message(id, message)
        except Exception as error:
            self._startup_dead.append(_dead_row(type_name, id_text, payload, error, None, 0, ()))
            self._startup.append(EntityWrite(type_name, id_text, None, 0, (timer_id,)))
            return
        out = _Out(address_of(etype, id), etype, id_text, message, payload, 0.0, None)
        self._arm(_Timer(timer_id, out, due))

    # -- entry points --------------------------------------------------------

    def _id_text(self, etype: EntityType, address: Address[Any]) -> str:
        key = address._key
        text = self._id_texts.get(key)
        if text is None:
            if len(self._id_texts) > self.cache_size:
                self._id_texts.clear()
            text = self._id_texts[key] = self.codec.encode_id(etype.name, address._id)
        return text

    def _outs(self, envelopes: Iterable[Envelope[Any]]) -> list[_Out]:
        """Check and encode envelopes from outside (raises before anything is sent)."""
        types = self.registry.types
        encode = self.codec.encode_message
        outs = []
        for env in envelopes:
            if type(env) is not _Envelope:
                raise not_an_envelope(env)
            to = env._to
            etype = types.get(to._entity_type)
            if etype is None or type(env._message) not in etype.message_set:
                self.resolve(env)  # raises, with the reason
                raise AssertionError("unreachable")
            payload = encode(etype.name, env._message)
            outs.append(
                _Out(to, etype, self._id_text(etype, to), env._message, payload, env._delay, None)
            )
        return outs

    def _submit(self, request: _Request) -> None:
        self._incoming.append(request)
        self._wake_up()

    def _wake_up(self) -> None:
        if not self._wake.is_set():
            self._wake.set()
            self._idle.clear()

    async def send_durably(self, envelopes: Iterable[Envelope[Any]]) -> None:
        """Send envelopes; return once they are committed."""
        self._check_open()
        outs = self._outs(envelopes)
        if not outs:
            return
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._submit(_Request(outs, ack))
        await ack

    def call(self, envelope: Envelope[Any]) -> asyncio.Future[Any]:
        """Commit one envelope; the future gets the target's state after it."""
        self._check_open()
        (out,) = self._outs((envelope,))
        out.fut = asyncio.get_running_loop().create_future()
        self._submit(_Request([out], None))
        return out.fut

    async def redeliver(self, dead: DeadLetter) -> None:
        """Re-enqueue a dead letter's message (and forget the dead letter)."""
        self._check_open()
        if isinstance(dead.message, bytes):
            raise PachytypeError(
                f"dead letter #{dead.seq} for {dead.to!r} holds a message that cannot be "
                f"decoded ({dead.error_type}: {dead.error}); fix the message classes or "
                f"upgrade the registry so it decodes, then redeliver it"
            )
        (out,) = self._outs((_Envelope(dead.to, dead.message, 0.0),))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._submit(_Request([out], ack, redeliver=dead.seq))
        await ack

    async def read_state(self, ref: Address[Any]) -> Any:
        """The entity's committed state (its `init` state if none is stored)."""
        self._check_open()
        etype = self.registry.get(ref.entity_type, ref.id)
        key = ref.key
        if key in self._cache:
            state = self._cache[key]
        else:
            id_text = self._id_text(etype, ref)
            found = await self.store.load_states([(etype.name, id_text)])
            stored = found.get((etype.name, id_text))
            if key in self._cache:  # committed while we read: newer
                state = self._cache[key]
            elif stored is None:
                state = _UNBORN
            else:
                state = self.codec.decode_state(etype.name, ref.id, stored[0], stored[1])
        if isinstance(state, _Broken):
            raise state.error
        if state is _UNBORN:
            try:
                return etype.instance.init(ref.id)
            except Exception as error:
                raise InitError(etype.name, ref.id, error) from error
        return state

    async def follow(self, ref: Address[Any]) -> AsyncIterator[Any]:
        self._check_open()
        state = await self.read_state(ref)
        if ref.key in self._cache:
            # Nothing awaits between here and registering: no commit is missed.
            cached = self._cache[ref.key]
            if cached is not _UNBORN and not isinstance(cached, _Broken):
                state = cached
        queue: asyncio.Queue[object] = asyncio.Queue()
        queues = self._followers.setdefault(ref.key, [])
        queues.append(queue)
        try:
            yield state
            while True:
                item = await queue.get()
                if item is _CLOSED:
                    return
                yield item
        finally:
            queues.remove(queue)
            if not queues and self._followers.get(ref.key) is queues:
                del self._followers[ref.key]

    async def stored_dead_letters(self) -> list[DeadLetter]:
        """Every persisted dead letter, oldest first, decoded where possible."""
        self._check_open()
        return [self._decode_dead(row) for row in await self.store.dead_letters()]

    def _decode_dead(self, row: DeadRow) -> DeadLetter:
        etype = self.registry.types.get(row.entity_type)
        id: Hashable = row.id_text
        message: object = row.message
        state: object = row.state
        recent: tuple[object, ...] = row.recent
        if etype is not None:
            codec = self.codec
            with contextlib.suppress(Exception):
                id = codec.decode_id(etype.name, row.id_text)
            with contextlib.suppress(Exception):
                message = codec.decode_message(etype.name, row.message)
            with contextlib.suppress(Exception):
                recent = tuple(codec.decode_message(etype.name, m) for m in row.recent)
            if row.state is not None:
                with contextlib.suppress(Exception):
                    state = codec.decode_state(etype.name, id, row.state, row.version)
            address = address_of(etype, id)
        else:
            from pachytype._address import Ref, make_ref

            address = make_ref(Ref, row.entity_type, id)
        return DeadLetter(
            seq=row.id,
            to=address,
            message=message,
            error_type=row.error_type,
            error=row.error,
            traceback=row.traceback,
            state=state,
            recent=recent,
            at=datetime.fromtimestamp(row.at, UTC),
        )

    async def quiesce(self) -> None:
        """Wait until every ready message is handled and committed."""
        while not self._idle.is_set() or self._wake.is_set():
            await self._idle.wait()
            await asyncio.sleep(0)
        self._check_open()

    # -- inboxes and timers ----------------------------------------------------

    def _put(self, address: Address[Any], etype: EntityType, id_text: str, mail: _Mail) -> None:
        key = address._key
        live = self._dlive.get(key)
        if live is None:
            live = self._dlive[key] = _Live(address, etype, id_text, self._recent.pop(key, None))
        live.inbox.append(mail)
        if not live.scheduled:
            live.scheduled = True
            self._dready.append(live)
            self._wake_up()

    def _arm(self, timer: _Timer) -> None:
        loop = asyncio.get_running_loop()
        self._armed[timer.id] = timer

        def fire() -> None:
            if self._armed.pop(timer.id, None) is not None:
                self._fired.append(timer)
                self._wake_up()

        timer.handle = loop.call_later(max(0.0, timer.due - time.time()), fire)

    # -- the dispatcher --------------------------------------------------------

    async def _dispatch(self) -> None:
        inflight: asyncio.Task[None] | None = None
        pending: _Pending | None = None
        try:
            while True:
                built = self._build()
                if self._to_load:
                    await self._load()
                if inflight is not None and pending is not None:
                    await inflight
                    self._pending = None
                    self._apply(pending)
                    inflight = pending = None
                    self._inflight_first = None
                if built is not None:
                    batch, pending = built
                    self._pending = pending
                    self._inflight_first = pending.first_id
                    inflight = asyncio.ensure_future(self.store.commit(batch))
                    continue
                self._wake.clear()
                if self._dready or self._incoming or self._fired or self._to_load:
                    await asyncio.sleep(0)
                    continue
                self._idle.set()
                await self._wake.wait()
        except asyncio.CancelledError:
            if inflight is not None:
                # Let the write finish (or fail) before the store closes.
                with contextlib.suppress(BaseException):
                    await asyncio.shield(inflight)
            raise
        except BaseException as error:
            self._failure = error
            self._fail_waiting(error)
            self._idle.set()
            raise

    def _build(self) -> tuple[CommitBatch, _Pending] | None:
        batch = CommitBatch()
        pending = _Pending(self._next_id)
        if self._startup:
            batch.entities.extend(self._startup)
            batch.dead.extend(self._startup_dead)
            self._startup = []
            self._startup_dead = []
        if self._incoming:
            self._take_requests(batch, pending)
        if self._fired:
            self._take_fired(batch, pending)
        ready = self._dready
        cache = self._cache
        budget = self.max_batch
        while ready and budget > 0:
            live = ready.popleft()
            if live.key not in cache:
                self._to_load.append(live)
                continue
            live.busy = True
            budget -= self._turn_durably(live, batch, pending, _SLICE)
        if not batch and not pending.acks and not pending.turns:
            return None
        self._commits += 1
        if self._commits % _GC_EVERY == 0:
            batch.forget_below = self._low_water(pending.first_id)
        return batch, pending

    def _take_requests(self, batch: CommitBatch, pending: _Pending) -> None:
        requests, self._incoming = self._incoming, []
        for request in requests:
            for out in request.outs:
                self._route_out(out, batch, pending)
            if request.redeliver is not None:
                batch.redelivered.append(request.redeliver)
            if request.ack is not None:
                pending.acks.append(request.ack)

    def _take_fired(self, batch: CommitBatch, pending: _Pending) -> None:
        fired, self._fired = self._fired, []
        for timer in fired:
            out = timer.out
            mail_id = self._next_id
            self._next_id += 1
            batch.mail.append((mail_id, out.etype.name, out.id_text, out.payload))
            batch.fired.append(timer.id)
            pending.deliver.append((mail_id, out))

    def _route_out(self, out: _Out, batch: CommitBatch, pending: _Pending) -> None:
        new_id = self._next_id
        self._next_id += 1
        if out.delay > 0:
            due = time.time() + out.delay
            batch.timers.append((new_id, out.etype.name, out.id_text, out.payload, due))
            pending.timers.append(_Timer(new_id, out, due))
        else:
            batch.mail.append((new_id, out.etype.name, out.id_text, out.payload))
            pending.deliver.append((new_id, out))

    def _low_water(self, floor: int) -> int:
        """The smallest id of any message not yet consumed (all of them are in memory)."""
        low = floor if self._inflight_first is None else min(floor, self._inflight_first)
        for live in self._dlive.values():
            if live.inbox and live.inbox[0].id < low:
                low = live.inbox[0].id
        return low

    async def _load(self) -> None:
        """Read the states of entities about to run whose state is not cached."""
        lives, self._to_load = self._to_load, []
        keys = [(live.etype.name, live.id_text) for live in lives]
        found = await self.store.load_states(keys)
        for live, key in zip(lives, keys, strict=True):
            stored = found.get(key)
            if stored is None:
                self._cache[live.key] = _UNBORN
            else:
                try:
                    state = self.codec.decode_state(
                        live.etype.name, live.address._id, stored[0], stored[1]
                    )
                except Exception as error:
                    state = _Broken(error)
                self._cache[live.key] = state
            self._dready.append(live)

    def _turn_durably(self, live: _Live, batch: CommitBatch, pending: _Pending, limit: int) -> int:
        """Run up to `limit` messages of one entity into `batch`; returns how many."""
        turn = _Turn(live)
        etype = live.etype
        inbox = live.inbox
        state = self._cache[live.key]
        if isinstance(state, _Broken):
            return self._refuse(live, turn, batch, pending, state.error)
        if state is _UNBORN:
            try:
                state = etype.instance.init(live.address._id)
            except Exception as error:
                mail = inbox.popleft()
                self._fail(live, turn, batch, mail, [mail], error, None)
                batch.entities.append(EntityWrite(etype.name, live.id_text, None, 0, (mail.id,)))
                pending.turns.append(turn)
                return 1
        activate = etype.instance.activate
        route = self._route_durably
        followed = bool(self._followers) and live.key in self._followers
        items = [inbox.popleft() for _ in range(min(len(inbox), limit))]
        outs: list[_Out] = []
        changed = False
        dead_mark = len(batch.dead)
        for i, mail in enumerate(items):
            try:
                envelopes, new_state = activate(mail.message, state)
                routed = [route(live, env) for env in envelopes] if envelopes else None
            except Exception as error:
                self._fail(live, turn, batch, mail, items[: i + 1], error, state)
                continue
            state = new_state
            changed = True
            if routed:
                outs.extend(routed)
            if mail.fut is not None:
                turn.results.append((mail.fut, state))
            if followed:
                turn.states.append(state)
        data: bytes | None = None
        if changed:
            try:
                data = self.codec.encode_state(etype.name, state)
            except Exception as error:
                if len(items) > 1:
                    # Find the activation whose state cannot be stored: one at a time.
                    inbox.extendleft(reversed(items))
                    del batch.dead[dead_mark:]
                    return self._turn_durably(live, batch, pending, 1)
                mail = items[0]
                turn.results.clear()
                turn.states.clear()
                outs.clear()
                self._fail(live, turn, batch, mail, items, _unstorable(etype, live, error), None)
                changed = False
            else:
                turn.state = state
        for out in outs:
            self._route_out(out, batch, pending)
        batch.entities.append(
            EntityWrite(etype.name, live.id_text, data, etype.state_version, [m.id for m in items])
        )
        live.recent.extend(m.message for m in items[-_RECENT:])
        pending.turns.append(turn)
        self.activations += len(items)
        return len(items)

    def _refuse(
        self, live: _Live, turn: _Turn, batch: CommitBatch, pending: _Pending, error: Exception
    ) -> int:
        """Dead-letter one message of an entity whose stored state cannot be loaded."""
        mail = live.inbox.popleft()
        self._fail(live, turn, batch, mail, [mail], error, None)
        batch.entities.append(EntityWrite(live.etype.name, live.id_text, None, 0, (mail.id,)))
        pending.turns.append(turn)
        return 1

    def _route_durably(self, live: _Live, env: Envelope[Any]) -> _Out:
        to, etype, message, delay = self._route(live, env)  # type: ignore[arg-type]
        payload = self.codec.encode_message(etype.name, message)
        return _Out(to, etype, self._id_text(etype, to), message, payload, delay, None)

    def _fail(
        self,
        live: _Live,
        turn: _Turn,
        batch: CommitBatch,
        mail: _Mail,
        handled: list[_Mail],
        error: Exception,
        state: object,
    ) -> None:
        etype = live.etype
        recent = [*live.recent, *(m.message for m in handled)][-_RECENT:]
        encode = self.codec.encode_message
        state_data: bytes | None = None
        if state is not None and state is not _UNBORN:
            with contextlib.suppress(Exception):
                state_data = self.codec.encode_state(etype.name, state)
        batch.dead.append(
            _dead_row(
                etype.name,
                live.id_text,
                encode(etype.name, mail.message),
                error,
                state_data,
                etype.state_version,
                tuple(encode(etype.name, m) for m in recent),
            )
        )
        if mail.fut is not None:
            failure = ActivationError(etype.name, live.address._id, mail.message, error)
            failure.__cause__ = error
            turn.failures.append((mail.fut, failure))

    def _apply(self, pending: _Pending) -> None:
        """A batch is durable: make its effects visible."""
        cache = self._cache
        followers = self._followers
        ready = self._dready
        for turn in pending.turns:
            live = turn.live
            key = live.key
            if turn.state is not _UNBORN:
                cache.pop(key, None)
                cache[key] = turn.state
            for fut, value in turn.results:
                if not fut.done():
                    fut.set_result(value)
            for fut, failure in turn.failures:
                if not fut.done():
                    fut.set_exception(failure)
            if followers and key in followers:
                notified = turn.states or ([turn.state] if turn.state is not _UNBORN else [])
                for q in followers[key]:
                    for s in notified:
                        q.put_nowait(s)
            live.busy = False
            if live.inbox:
                ready.append(live)
            else:
                live.scheduled = False
                del self._dlive[key]
                recent = self._recent
                recent[key] = live.recent
                if len(recent) > _RECENT_KEPT:
                    recent.popitem(last=False)
        for mail_id, out in pending.deliver:
            self._put(out.address, out.etype, out.id_text, _Mail(mail_id, out.message, out.fut))
        for timer in pending.timers:
            self._arm(timer)
        for ack in pending.acks:
            if not ack.done():
                ack.set_result(None)
        if len(cache) > self.cache_size:
            self._evict()

    def _evict(self) -> None:
        cache = self._cache
        excess = len(cache) - self.cache_size + self.cache_size // 10
        for key in list(itertools.islice(cache, excess)):
            del cache[key]


def _unstorable(etype: EntityType, live: _Live, error: Exception) -> Exception:
    failure = PachytypeError(
        f"entity {etype.name!r} (id {live.address._id!r}) returned a new state that cannot "
        f"be stored ({type(error).__name__}: {error}); make the state type one the codec "
        f"can encode (attrs classes, str, int, float, bool, None, tuples, lists, dicts)"
    )
    failure.__cause__ = error
    return failure


def _dead_row(
    entity_type: str,
    id_text: str,
    message: bytes,
    error: BaseException,
    state: bytes | None,
    version: int,
    recent: tuple[bytes, ...],
) -> DeadRow:
    return DeadRow(
        entity_type=entity_type,
        id_text=id_text,
        message=message,
        error_type=type(error).__qualname__,
        error=str(error),
        traceback="".join(traceback.format_exception(error)),
        state=state,
        version=version,
        recent=recent or (message,),
        at=time.time(),
    )
