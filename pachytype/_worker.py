"""Workers: the one place for side effects (charging a card, sending mail).

Design note
-----------
A worker is declared beside the entities::

    class Payments(Worker[Charge, Charged | ChargeFailed]):
        max_attempts = 5
        async def perform(self, request: Charge, attempt: Attempt) -> Charged | ChargeFailed:
            ...   # may do I/O; attempt.key is the same on every retry

Underneath it is an ordinary entity (id 0, state `WorkerState`), so it
gets every promise of an entity on every ecosystem without code of its own
in any of them:

* **Outbox.** An entity asks for an effect by returning an envelope to the
  worker (`refs.payments().charge(..., reply_to=refs.order(o))`), so the
  request is committed with the activation that made it.
* **Pending requests are state.** The worker entity's pure `activate`
  keeps each request with its idempotency key (the same on every retry),
  its attempts, when it is next due and who holds it (a claim with a lease).
* **Claims.** A runner (`pachytype._worker_runner`, one per worker type on
  every ecosystem that runs entities) `call`s `ClaimWork` with its clock;
  the grant is exclusive because one activation at a time decides it, and
  the state the call returns says what was granted. The grant respects the
  worker's `concurrency` across all runners.
* **Exactly-once result.** The runner performs the request and sends
  `WorkDone(key, reply)`; the worker entity forwards `reply` to the
  request's `reply_to` and forgets the request in ONE activation. A result
  for a key no longer pending (a runner whose lease ran out while another
  retried) is counted in `duplicates` and dropped. So: at-least-once
  perform, exactly-once result (on durable ecosystems).
* **Retries.** `WorkFailed` (perform raised or passed `timeout`) makes the
  request due again after an exponential backoff; at `max_attempts`, or
  when the lease of the last attempt runs out (its runner died), the pure
  `give_up` turns the request into a final result (or None: no answer).

Time comes only from the runners' messages (`now`), so `activate` stays
pure; leases compare runners' clocks, so nodes need roughly synchronised
clocks (seconds, not milliseconds).

* **Shards.** Requests are sent to the worker's entrance (id 0,
  `WORKER_ID`), which numbers them, gives each its key and hands it to one
  of `shards` shard entities (ids 1..n, by a hash of the key: a request
  received again under a natural key reaches the same shard, which absorbs
  it) in an `Assigned` message; the shards hold the pending requests and
  grant claims, each for its share of `concurrency`. Before, one entity
  held every pending request: each activation rebuilt and re-encoded a
  state of O(pending), and runners follow the worker, so on Postgres every
  intermediate state of a batch was encoded and written to `history` and
  read back by each runner: O(pending^2) bytes per batch, which stalled at
  a few thousand pending requests. Shards divide that by n squared per
  shard, and live in different partitions, so several nodes commit them
  at once. With one shard (`shards = 1`, or `concurrency = 1`) the
  entrance holds the requests itself, as before.

Runners read the ecosystem's `clock=` (a `ManualClock` moves backoffs and
leases); a perform's `timeout` is real time (it bounds real I/O).
"""

from __future__ import annotations

import zlib
from typing import Any, ClassVar, Final, Generic, TypeVar

from attrs import evolve, frozen

from pachytype._address import Address, CancelTimer, Envelope, make_envelope
from pachytype._entity import Activation, Entity

Req = TypeVar("Req")
Res = TypeVar("Res")

WORKER_ID: Final = 0
"""The id of every worker's entrance, where requests are sent (its shards are 1..n)."""


@frozen
class Attempt:
    """What `perform` is told about the attempt it makes."""

    key: str
    """The idempotency key: the same on every attempt of one request; give it
    to the outside system so that it can deduplicate."""
    number: int
    """1 for the first attempt."""
    runner: str
    """The runner performing it (for logs)."""


@frozen
class Failure:
    """Why a request is given up: given to `Worker.give_up`."""

    key: str
    attempts: int
    error: str


@frozen
class Pending:
    """One request not answered yet."""

    key: str
    request: Envelope[Any]
    """The request, as the envelope that brought it (to the worker itself)."""
    attempts: int = 0
    """Attempts granted so far."""
    due: float = 0.0
    """Not to be tried before this time (seconds since the epoch, runners' clocks)."""
    claim: str | None = None
    """The grant of the runner performing it now, if any."""
    lease_until: float = 0.0
    """When that grant lapses (then another runner may try again)."""
    error: str | None = None
    """The last attempt's failure."""


@frozen
class WorkerState:
    """A worker's pending requests, oldest first, and counts of what became of
    the others."""

    next_seq: int = 0
    pending: tuple[Pending, ...] = ()
    completed: int = 0
    """Requests answered with `perform`'s result."""
    gave_up: int = 0
    """Requests answered by `give_up` (or dropped) after their last attempt."""
    duplicates: int = 0
    """Results that arrived for a request already answered (absorbed)."""
    repeated: int = 0
    """Requests received again while pending under the same key (absorbed)."""


# -- the runners' messages -------------------------------------------------------------


@frozen
class ClaimWork:
    """A runner asks for up to `limit` due requests; `claim` names the grant.
    `cap`: how many requests this entity may have granted at once (its share
    of the worker's `concurrency`; 0: all of it)."""

    claim: str
    runner: str
    now: float
    limit: int
    cap: int = 0


@frozen
class Assigned:
    """The entrance hands the request `key` (as the envelope that brought it) to a shard."""

    key: str
    request: Envelope[Any]


@frozen
class WorkDone:
    """The request `key` was performed; `reply` carries the result to `reply_to`."""

    key: str
    claim: str
    reply: Envelope[Any] | None


@frozen
class WorkFailed:
    """The attempt granted as `claim` failed at `now`."""

    key: str
    claim: str
    now: float
    error: str


@frozen
class ReleaseWork:
    """A stopping runner gives its grants back, to be tried again at once."""

    claims: tuple[str, ...]


CONTROL_MESSAGES: Final = (Assigned, ClaimWork, ReleaseWork, WorkDone, WorkFailed)
"""The messages runners send to every worker entity, besides its requests."""


class Worker(Entity[int, Any, WorkerState], Generic[Req, Res]):
    """Base class of workers: `Worker[Request, Result]`.

    Define `async def perform(self, request, attempt) -> Result` (it may do
    I/O), and optionally `give_up(request, failure)` (pure) for the answer
    after the last attempt. Requests reach it as messages (`refs.payments()
    .charge(...)`); a request with a `reply_to: Address[Result]` field gets
    the result there, exactly once.
    """

    max_attempts: ClassVar[int] = 5
    """Attempts per request, the first included."""
    concurrency: ClassVar[int] = 8
    """Requests performed at once, across every runner of every node."""
    timeout: ClassVar[float] = 30.0
    """Seconds one `perform` may take; then it is cancelled and counts as failed."""
    lease_margin: ClassVar[float] = 5.0
    """A grant lasts `timeout + lease_margin` seconds: after that (the runner
    died), another runner may try again."""
    backoff: ClassVar[float] = 1.0
    """Seconds before the second attempt; doubled for each further one."""
    max_backoff: ClassVar[float] = 300.0
    shards: ClassVar[int] = 8
    """Entities the pending requests are spread over (at most `concurrency`;
    see the module's design note): more lets more nodes commit claims and
    results at once, and keeps each one's state small."""

    async def perform(self, request: Req, attempt: Attempt) -> Res:
        """Do the effect and return the result. Raise to retry."""
        raise NotImplementedError(f"worker {type(self).__name__} must define async perform()")

    def give_up(self, request: Req, failure: Failure) -> Res | None:
        """The answer once no attempt is left (pure: it runs in `activate`);
        None sends no answer."""
        return None

    def key(self, request: Req, seq: int) -> str:
        """The idempotency key of a new request (pure). The default numbers
        requests; return a natural key (`f"charge-{request.order}"`) to make a
        request received again while pending count once."""
        return f"{type(self).entity_type}-{seq}"

    # -- the entity (library code: do not override) ---------------------------------

    def init(self, id: int) -> WorkerState:
        return WorkerState()

    def activate(self, msg: Any, state: WorkerState) -> Activation[WorkerState]:
        match msg:
            case ClaimWork():
                return self._claim(msg, state)
            case WorkDone(key=key, reply=reply):
                if _find(state, key) is None:
                    return [], evolve(state, duplicates=state.duplicates + 1)
                rest = tuple(p for p in state.pending if p.key != key)
                answer = [] if reply is None else [reply]
                return answer, evolve(state, pending=rest, completed=state.completed + 1)
            case WorkFailed(key=key, claim=claim, now=now, error=error):
                pending = _find(state, key)
                if pending is None or pending.claim != claim:
                    return [], state  # a stale attempt: another one holds it, or it is done
                if pending.attempts >= self.max_attempts:
                    return self._give_up(state, evolve(pending, error=error))
                retry = evolve(
                    pending,
                    due=now + self.retry_delay(pending.attempts),
                    claim=None,
                    lease_until=0.0,
                    error=error,
                )
                return [], _replace(state, retry)
            case Assigned(key=key, request=request):
                if _find(state, key) is not None:
                    return [], evolve(state, repeated=state.repeated + 1)
                return [], evolve(state, pending=(*state.pending, Pending(key, request)))
            case ReleaseWork(claims=claims):
                released = tuple(
                    evolve(p, claim=None, lease_until=0.0, attempts=p.attempts - 1)
                    if p.claim in claims
                    else p
                    for p in state.pending
                )
                return [], evolve(state, pending=released)
            case _:
                return self._receive(msg, state)

    def retry_delay(self, attempts: int) -> float:
        """Seconds between a failed attempt (the `attempts`-th) and the next."""
        return float(min(self.max_backoff, self.backoff * 2 ** max(attempts - 1, 0)))

    def shard_count(self) -> int:
        """How many shards hold the pending requests (1: the entrance itself)."""
        return max(1, min(self.shards, self.concurrency))

    def shard_of(self, key: str) -> int:
        """The id of the entity that holds the request `key`."""
        n = self.shard_count()
        return WORKER_ID if n == 1 else 1 + zlib.crc32(key.encode()) % n

    def share(self, shard: int) -> int:
        """How many requests the entity `shard` may have granted at once: the
        worker's `concurrency` divided over its shards (the entrance of a
        sharded worker holds only requests stored before it was sharded)."""
        n = self.shard_count()
        if n == 1 or shard == WORKER_ID:
            return self.concurrency
        return self.concurrency // n + (1 if shard - 1 < self.concurrency % n else 0)

    @property
    def lease(self) -> float:
        """How long a grant lasts, in seconds."""
        return self.timeout + self.lease_margin

    def _receive(self, request: Any, state: WorkerState) -> Activation[WorkerState]:
        key = self.key(request, state.next_seq)
        envelope = make_envelope(self.address(WORKER_ID), request)
        shard = self.shard_of(key)
        if shard != WORKER_ID:
            handed = make_envelope(self.address(shard), Assigned(key, envelope))
            return [handed], evolve(state, next_seq=state.next_seq + 1)
        if _find(state, key) is not None:
            return [], evolve(state, repeated=state.repeated + 1)
        pending = Pending(key, envelope)
        return [], evolve(state, next_seq=state.next_seq + 1, pending=(*state.pending, pending))

    def _claim(self, claim: ClaimWork, state: WorkerState) -> Activation[WorkerState]:
        now = claim.now
        out: list[Envelope[Any] | CancelTimer] = []
        granted = 0
        room = min(claim.limit, (claim.cap or self.concurrency) - len(held(state, now)))
        for pending in claimable(state, now):
            if granted >= room:
                break
            if pending.attempts >= self.max_attempts:
                # Its last attempt's runner died (its lease ran out): no answer came.
                error = pending.error or "the runner of the last attempt stopped answering"
                answer, state = self._give_up(state, evolve(pending, error=error))
                out.extend(answer)
                continue
            granted += 1
            state = _replace(
                state,
                evolve(
                    pending,
                    attempts=pending.attempts + 1,
                    claim=claim.claim,
                    lease_until=now + self.lease,
                ),
            )
        return out, state

    def _give_up(self, state: WorkerState, pending: Pending) -> Activation[WorkerState]:
        request: Req = pending.request.message  # type: ignore[assignment]  # stored as sent
        failure = Failure(pending.key, pending.attempts, pending.error or "")
        result = self.give_up(request, failure)
        to = reply_address(request)
        answer = [] if result is None or to is None else [to.post(result)]
        rest = tuple(p for p in state.pending if p.key != pending.key)
        return answer, evolve(state, pending=rest, gave_up=state.gave_up + 1)


def reply_address(request: object) -> Address[Any] | None:
    """The request's `reply_to`, if it has one."""
    to = getattr(request, "reply_to", None)
    return to if isinstance(to, Address) else None


def held(state: WorkerState, now: float) -> list[Pending]:
    """Requests some runner holds a live grant for."""
    return [p for p in state.pending if p.claim is not None and p.lease_until > now]


def claimable(state: WorkerState, now: float) -> list[Pending]:
    """Requests a runner may be granted at `now`, oldest first."""
    return [p for p in state.pending if (p.claim is None or p.lease_until <= now) and p.due <= now]


def next_wake(state: WorkerState, now: float) -> float | None:
    """The next time something becomes claimable (a backoff ends, a lease lapses)."""
    times = [p.due for p in state.pending if p.claim is None and p.due > now]
    times += [p.lease_until for p in state.pending if p.claim is not None and p.lease_until > now]
    return min(times, default=None)


def _find(state: WorkerState, key: str) -> Pending | None:
    return next((p for p in state.pending if p.key == key), None)


def _replace(state: WorkerState, pending: Pending) -> WorkerState:
    return evolve(
        state, pending=tuple(pending if p.key == pending.key else p for p in state.pending)
    )
