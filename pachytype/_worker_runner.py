"""Worker runners: the effects at the edge, for every worker type of a registry.

Design note. One generic implementation over the public `Ecosystem`
interface (`follow`, `call`, `send`), so it runs the same on InMemory,
LocalDisk, the simulation's ecosystem and Postgres (on every node, each
with its own runner id; a request's grant is exclusive because the worker
entity holding it decides it in one activation). A runner:

1. follows each entity holding its worker's requests (`follow` yields each
   committed state): the shards, and the entrance (`pachytype._worker`);
2. when a shard has a claimable request and the runner has room, `call`s
   `ClaimWork` on it with its clock, a fresh claim id, its free slots and
   the shard's share of `concurrency`; the state that call returns lists
   the requests granted under that claim id;
3. performs each granted request in its own task, under the worker's
   `timeout`, and sends `WorkDone(key, reply)` (the result addressed to
   the request's `reply_to`) or `WorkFailed(key, error)`;
4. sleeps until the next state, the next due time or lease lapse, or a
   slot frees.

A runner killed mid-perform sends nothing: its grant lapses after the
lease and another runner (or this one, restarted) performs the request
again with the same idempotency key. A runner stopped gracefully
(ecosystem closing, SIGTERM on a node) cancels its performs and gives
their grants back (`ReleaseWork`) so they are retried at once elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import TYPE_CHECKING, Any

from pachytype._address import Envelope, Ref, make_envelope, make_ref
from pachytype._clock import Clock, SystemClock
from pachytype._errors import EcosystemClosedError, PachytypeError
from pachytype._worker import (
    WORKER_ID,
    Attempt,
    ClaimWork,
    Pending,
    ReleaseWork,
    WorkDone,
    Worker,
    WorkerState,
    WorkFailed,
    claimable,
    held,
    next_wake,
    reply_address,
)

if TYPE_CHECKING:
    from pachytype._ecosystem import Ecosystem
    from pachytype._registry import EntityType

log = logging.getLogger("pachytype.workers")

_REPORT_TRIES = 5
"""Attempts at sending a result before leaving it to the lease (and a retry)."""


class WorkerHost:
    """The runners of one ecosystem: one per worker type of its registry."""

    def __init__(self, runners: list[WorkerRunner]) -> None:
        self.runners = runners

    @classmethod
    def start(cls, eco: Ecosystem) -> WorkerHost | None:
        """Start a runner for each worker type of `eco`'s registry (None if it has none)."""
        runners = [
            WorkerRunner(eco, etype) for etype in eco.registry if issubclass(etype.entity, Worker)
        ]
        if not runners:
            return None
        for runner in runners:
            runner.start()
        return cls(runners)

    async def stop(self) -> None:
        """Stop every runner, giving the grants of cancelled performs back."""
        await asyncio.gather(*(r.stop() for r in self.runners))


class WorkerRunner:
    """Performs the requests of one worker type for one ecosystem."""

    def __init__(self, eco: Ecosystem, etype: EntityType) -> None:
        self.eco = eco
        clock = getattr(eco, "clock", None)
        self.clock: Clock = SystemClock() if clock is None else clock
        """The ecosystem's clock (`clock=`): claims, backoffs and leases follow it,
        so a `ManualClock` test moves retries on with `advance`."""
        worker = etype.entity()
        assert isinstance(worker, Worker)
        self.worker: Worker[Any, Any] = worker
        shards = worker.shard_count()
        ids = [WORKER_ID] if shards == 1 else [WORKER_ID, *range(1, shards + 1)]
        self.refs: dict[int, Ref[Any, WorkerState]] = {i: make_ref(Ref, etype.name, i) for i in ids}
        """The entities holding this worker's requests: its shards (and the
        entrance, which holds those stored before the worker was sharded)."""
        self.ref = self.refs[WORKER_ID]
        self.id = f"{etype.name}-{uuid.uuid4().hex[:12]}"
        self.performing: dict[str, tuple[str, asyncio.Task[None], int]] = {}
        """key -> (claim, task, shard) of the performs in progress."""
        self.performed = 0
        """Performs this runner finished (successfully or not): for tests and logs."""
        self._states: dict[int, WorkerState] = {}
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        return f"<WorkerRunner {self.id}>"

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._follow(shard), name=f"{self.id} follow {shard}")
            for shard in self.refs
        ]
        self._tasks.append(loop.create_task(self._run(), name=f"{self.id} run"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        performing = list(self.performing.values())
        for _claim, task, _shard in performing:
            task.cancel()
        await asyncio.gather(*self._tasks, *(t for _, t, _ in performing), return_exceptions=True)
        by_shard: dict[int, set[str]] = {}
        for claim, _task, shard in performing:
            by_shard.setdefault(shard, set()).add(claim)
        for shard, claims in sorted(by_shard.items()):
            # Best effort: if it fails, the grants lapse with their lease.
            with contextlib.suppress(Exception):
                release = ReleaseWork(tuple(sorted(claims)))
                await self.eco.call(self._post(shard, release), timeout=2.0)

    def _post(self, shard: int, message: object) -> Envelope[WorkerState]:
        envelope: Envelope[WorkerState] = make_envelope(self.refs[shard], message)
        return envelope

    async def _follow(self, shard: int) -> None:
        while True:
            try:
                async for state in self.eco.follow(self.refs[shard]):
                    self._states[shard] = state
                    self._changed.set()
                return  # the ecosystem closed
            except (EcosystemClosedError, asyncio.CancelledError):
                raise
            except Exception:
                log.exception("%s: following shard %d failed; following again", self, shard)
                await asyncio.sleep(1.0)

    async def _run(self) -> None:
        while True:
            now = self.clock.now()
            shard = self._claimable(now)
            if shard is not None:
                try:
                    await self._claim(shard, now)
                except (EcosystemClosedError, asyncio.CancelledError):
                    raise
                except Exception:
                    log.exception("%s: claiming failed; trying again", self)
                    await asyncio.sleep(1.0)
                continue
            wakes = [next_wake(state, now) for state in self._states.values()]
            wake = min((w for w in wakes if w is not None), default=None)
            self._changed.clear()
            alarm = None if wake is None else self.clock.call_at(wake, self._changed.set)
            try:
                await self._changed.wait()
            finally:
                if alarm is not None:
                    alarm.cancel()

    def _room(self) -> int:
        return self.worker.concurrency - len(self.performing)

    def _claimable(self, now: float) -> int | None:
        """A shard with a request this runner may claim now, if any (and room)."""
        if self._room() <= 0:
            return None
        for shard, state in self._states.items():
            if len(held(state, now)) >= self.worker.share(shard):
                continue
            if any(p.key not in self.performing for p in claimable(state, now)):
                return shard
        return None

    async def _claim(self, shard: int, now: float) -> None:
        claim = uuid.uuid4().hex
        share = self.worker.share(shard)
        message = ClaimWork(claim, self.id, now, min(self._room(), share), share)
        state = await self.eco.call(self._post(shard, message))
        self._states[shard] = state
        loop = asyncio.get_running_loop()
        for pending in state.pending:
            if pending.claim == claim and pending.key not in self.performing:
                task = loop.create_task(
                    self._perform(pending, claim, shard), name=f"{self.id} perform"
                )
                self.performing[pending.key] = (claim, task, shard)

    async def _perform(self, pending: Pending, claim: str, shard: int) -> None:
        request = pending.request.message
        attempt = Attempt(pending.key, pending.attempts, self.id)
        outcome: object
        try:
            try:
                async with asyncio.timeout(self.worker.timeout):
                    result = await self.worker.perform(request, attempt)
            except TimeoutError:
                outcome = self._failed(
                    pending, claim, f"TimeoutError: perform took over {self.worker.timeout:g} s"
                )
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.info("%s: %s attempt %d failed: %r", self, pending.key, attempt.number, error)
                outcome = self._failed(pending, claim, f"{type(error).__name__}: {error}")
            else:
                outcome = self._done(pending, claim, request, result)
            self.performed += 1
            await self._report(shard, pending, outcome)
        finally:
            self.performing.pop(pending.key, None)
            self._changed.set()

    def _failed(self, pending: Pending, claim: str, error: str) -> WorkFailed:
        return WorkFailed(pending.key, claim, self.clock.now(), error)

    def _done(self, pending: Pending, claim: str, request: object, result: object) -> object:
        to = reply_address(request)
        if to is None or result is None:
            return WorkDone(pending.key, claim, None)
        reply = to.post(result)
        try:
            self.eco.registry.get(to.entity_type, to.id).check_message(to.id, result)
        except PachytypeError as error:
            return self._failed(pending, claim, f"perform returned a wrong result: {error}")
        return WorkDone(pending.key, claim, reply)

    async def _report(self, shard: int, pending: Pending, outcome: object) -> None:
        delay = 0.1
        for attempt in range(1, _REPORT_TRIES + 1):
            try:
                await self.eco.send(self._post(shard, outcome))
                return
            except EcosystemClosedError:
                raise
            except Exception:
                if attempt == _REPORT_TRIES:
                    log.exception(
                        "%s: could not report %s; it is performed again after its lease",
                        self,
                        pending.key,
                    )
                    return
                await asyncio.sleep(delay)
                delay *= 2


async def worker_state(eco: Ecosystem, ref: Ref[Any, WorkerState]) -> WorkerState:
    """The state of a worker as a whole: the pending requests of every shard
    (and of its entrance) and the sums of their counts (each read committed,
    one after the other)."""
    etype = eco.registry.get(ref.entity_type, ref.id)
    worker = etype.entity()
    assert isinstance(worker, Worker)
    n = worker.shard_count()
    ids = [WORKER_ID] if n == 1 else [WORKER_ID, *range(1, n + 1)]
    states = [await eco.state(make_ref(Ref, etype.name, i)) for i in ids]
    return WorkerState(
        next_seq=states[0].next_seq,
        pending=tuple(p for s in states for p in s.pending),
        completed=sum(s.completed for s in states),
        gave_up=sum(s.gave_up for s in states),
        duplicates=sum(s.duplicates for s in states),
        repeated=sum(s.repeated for s in states),
    )
