"""The durable store interface: what a durable ecosystem keeps on disk, as plain values.

Design note
-----------
Every ecosystem runs the same runtime core (`pachytype._runtime.dispatch`, and its
durable dispatcher in `pachytype._runtime.durable`); a durable ecosystem only adds a
`Store`. The store never sees a Python message, state or address: only
entity type names, ids encoded as text (`Codec.encode_id`), bytes
(`Codec.encode_message` / `Codec.encode_state`), integers and floats. So a
store is an I/O adapter with no knowledge of the registry, and the runtime
is pure scheduling with no knowledge of SQL.

The contract, in the order the runtime uses it:

1. `open(fingerprint, wake)` once, before anything else. It takes whatever
   makes this process a writer (LocalDisk: an `flock`; Postgres: partition
   leases) and returns a `Recovery` of what it owns now: the next free
   message id, every message not yet consumed (in id order), every pending
   timer, the suspects of a crash. `wake` is the store's bell: it rings it
   (a plain call, on the event loop) whenever `news()` has something.
2. The runtime runs *group commits*, one at a time, in build order: it
   builds a `CommitBatch` (plain values), awaits `commit(batch)`, and only
   when that returns makes anything observable (`send`s return, `call`s
   resolve, followers see states). `commit` must be atomic (all of the
   batch or nothing) and durable when it returns. Mail may be *consumed*
   in the same batch that stores it (the runtime then leaves its row out
   of `mail`: the consumer's cursor and state record it) or in a later one,
   never an earlier one.
3. `load_states(keys)` reads committed states (and `load_journals(keys)`
   the snapshot and later events of event-sourced entities) of entities about to be
   activated whose state is not cached, and for `eco.state(ref)`. It must
   return what the last finished `commit` wrote.
4. `dead_letters()` lists persisted dead letters; `close()` releases the lock.

Ownership and other writers
---------------------------
A store may own only part of the entities, and the part may change while
it runs (Postgres: partitions move between nodes). The unit of ownership
is a *scope*, an int: `scope_of(entity type, id text)` is pure and the same
in every process (SQLite: 0, owned by the one writer, forever). Changes
reach the runtime through `news()`, which the runtime awaits between two
commits (never while one is in flight) after the store rang `wake`:

* **Lost scopes** (`News.lost`): the runtime drops every entity of them
  from memory (inbox, cached state, recent messages, armed timers; a local
  `call` waiting on one fails, saying its message is stored and goes on
  with the new owner). Their mail and timers stay stored for the new owner.
  Then it hands their recent messages not written yet to `leave`, which
  writes them only where the scope is still the store's as it was (a planned
  handover waits for this before it releases the scopes), so the new owner
  reads them with the state.
* **Gained scopes** (`News.gained`): a `Recovery` of them, exactly as `open`
  returns one (unconsumed mail, timers, suspects); the runtime puts it
  back in inboxes and arms the timers. A store gains every scope it owns
  at `open`, so `open`'s recovery is the first gain.
* **Mail to other owners.** The runtime puts new mail in inboxes only for
  scopes in `owned()`; mail (and timers) for the others is only written
  by the commit, and the store tells their owner (Postgres: a NOTIFY of
  their partitions in the committing transaction).
* **Mail from other processes** (`News.mail`, `News.timers`): rows written by other
  processes to owned scopes since the last recovery or claim (Postgres:
  a NOTIFY rings `wake`, `news()` claims the rows not yet taken by this
  owner's epoch). They join their inboxes behind what is there.
* **Answers** (`Recovery.calls`, `News.calls`): ids of mail whose sender, in
  another process, awaits the state after it. The runtime puts each answer
  (the encoded state, or the error) in `CommitBatch.answers` of the commit
  that consumes the message; the store delivers it as part of that commit
  (Postgres: a row with the dedupe id, and a NOTIFY on the caller's
  channel, in the same transaction), so no caller sees an answer that was
  not committed.
* **Fenced commits.** A store whose ownership may be taken checks it in the
  commit itself (Postgres: the partition epochs, under the lease rows'
  locks) and raises `FencedError` when it no longer holds a scope the batch
  touches; then nothing of the batch is written. The runtime applies
  nothing of it either: it puts the batch's outside requests back in line,
  forgets every scope (as if all were lost), and awaits `news()`, which
  must answer with a `Recovery` of every scope the store still owns (its
  unconsumed mail whoever took it: what this process held in memory is
  gone). Nothing anyone saw is rolled back, because nothing of the batch
  was seen.

Message ids are allocated by the runtime from `Recovery.next_id` upward,
in build order, so for one receiver ids grow in the order messages enter
its inbox. That is what makes the per-entity *consumed cursor* a correct
dedupe record: each `EntityRow` carries the last id the entity consumed; a
store may keep only that and treat any message with an id at or below it
as already applied (LocalDisk), or record every id of
`CommitBatch.consumed` (a store whose ids are not commit-ordered must:
mail claimed from other processes carries ids the store gives it, which
need not be above the runtime's; a multi-node store keeps its own ids out
of the runtime's range, e.g. by numbering claimed rows from a sequence the
runtime's `next_id` starts above, and records each consumed id). A
message is consumed in the same transaction as the state it produced:
exactly-once effect even when mail is redelivered after a crash.

Followers in other processes (`followed()`): every committed state of
those entities goes in `CommitBatch.history`, in order (Postgres writes them
to its `history` table, which such followers read).

Timers are stored with their due time on the runtime's clock (`clock=`),
never the database's, so a `ManualClock` moves durable timers too.

The stores: `pachytype._sqlite.SqliteStore` (LocalDisk) implements the
ownership part trivially: one scope, owned from `open` to `close`, no other
writer, so `wake` never rings, `news()` is empty and `commit` is never
fenced. `pachytype._postgres.store.PostgresStore` (one per Postgres node worker)
implements all of it: partitions as scopes, lease epochs checked in the
commit statement, claims by snapshot horizon, ids per node session.

Trade-offs: the unconsumed mail of gained scopes is all loaded (LocalDisk
at open; Postgres page by page, one page per `news()`, while the runtime
works); a fenced commit costs a reload of every owned scope (it is rare: a
node paused past its lease, or a follower registering an entity of the
batch; a planned handover waits for the runtimes to drop the partitions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeAlias

from attrs import define, field, frozen

from pachytype._errors import PachytypeError

EntityKey: TypeAlias = tuple[str, str]
"""`(entity type name, id encoded as text)`: an entity as stores see it."""

MailRow: TypeAlias = tuple[int, str, str, bytes]
"""`(message id, entity type, id text, encoded message)`: one message ready now."""

TimerRow: TypeAlias = tuple[int, str, str, bytes, float, str | None]
"""`(timer id, entity type, id text, encoded message, due as Unix time, timer
key or None)`: a delayed message, moved into the mailbox (with a new message
id) when due. The runtime keeps the keyed-timer rule (`pachytype._core.timers`):
a store only inserts `timers` and deletes `fired` and `cancelled` ids."""

StoredState: TypeAlias = tuple[bytes | None, int, tuple[bytes, ...]]
"""`(encoded state or None if it has none yet, state version it was written
with, the entity's recent messages as stored, oldest first)`: the recent
messages outlive a restart so a later dead letter still shows what came
before it."""


EntityRow: TypeAlias = tuple[str, str, bytes | None, int, int, tuple[bytes, ...] | None]
"""`(entity type, id text, new encoded state or None if unchanged, state
version, id of the last message it consumed, its recent messages as stored
or None if unchanged)`: an entity's outcome in one commit (state None: e.g.
every message it handled was dead-lettered)."""


EventRow: TypeAlias = tuple[str, str, int, bytes]
"""`(entity type, id text, sequence number in the entity, encoded event)`: one
event appended to an event-sourced entity's log."""

SnapshotRow: TypeAlias = tuple[str, str, int, bytes, int]
"""`(entity type, id text, sequence number of the last event folded in, encoded
state, state version)`: an event-sourced entity's latest snapshot."""

LogRow: TypeAlias = tuple[int, str, int, bytes]
"""`(log position, id text, sequence number, encoded event)`: an event read back."""

HistoryRow: TypeAlias = tuple[str, str, bytes, int]
"""`(entity type, id text, encoded state, state version)`: one committed state
of an entity followed in another process."""

AnswerRow: TypeAlias = tuple[int, bytes | None, int, str | None, str | None, BaseException | None]
"""`(message id, encoded state after it or None, state version, error type or
None, error text or None, the error itself or None)`: the answer to a caller
in another process (the error itself is not stored: a caller that turns out
to be in this process gets it as raised)."""


@frozen
class Journal:
    """What rebuilds an event-sourced entity: its latest snapshot
    `(seq, encoded state, state version)` or None, and its events after it
    `(seq, encoded event)` in order."""

    snapshot: tuple[int, bytes, int] | None
    events: list[tuple[int, bytes]]


@frozen
class DeadRow:
    """A dead letter as stored: the message, why it failed, and context."""

    entity_type: str
    id_text: str
    message: bytes
    error_type: str
    error: str
    traceback: str
    state: bytes | None
    version: int
    recent: tuple[bytes, ...]
    at: float
    id: int = 0
    """Assigned by the store; 0 before it is stored."""


@define
class CommitBatch:
    """One group commit: everything here is written in one transaction.

    * `entities`: new states and consumed cursors (one row per entity).
    * `consumed`: every message id consumed (for stores that record each).
    * `mail`: new messages due now (from activations, outside `send`s,
      fired timers and redeliveries).
    * `timers`: new delayed messages.
    * `fired`: ids of timers whose message is in `mail` (delete them).
    * `cancelled`: ids of keyed timers replaced or cancelled (delete them,
      after inserting `timers`: a timer may be set and cancelled in one batch).
    * `cancels`: keyed timers of entities another process owns, cancelled
      `(entity type, id text, key)`: delete their pending row (and a keyed
      row in `timers` for such an entity replaces its pending one).
    * `dead`: new dead letters; `redelivered`: ids of dead letters whose
      message is in `mail` again (delete them).
    * `forget_below`: every message with an id below this is consumed; the
      store may delete them (None: no news).
    * `attempted`: ids of stored mail about to be run again after a crash:
      count one more attempt for each, durably, before it runs.
    * `forgotten`: entities whose row to delete (an ask's inbox, its ask over).
    * `events`: events appended to event-sourced entities' logs, in order
      (the store gives each a log position, increasing in commit order);
      `snapshots`: their new snapshots (replacing the previous one).
    * `answers`: answers to callers in other processes (`Recovery.calls`),
      delivered as part of this commit.
    * `history`: each committed state of entities followed in other
      processes (`Store.followed()`), in order, for their followers.
    """

    entities: list[EntityRow] = field(factory=list)
    consumed: list[int] = field(factory=list)
    mail: list[MailRow] = field(factory=list)
    timers: list[TimerRow] = field(factory=list)
    fired: list[int] = field(factory=list)
    cancelled: list[int] = field(factory=list)
    cancels: list[tuple[str, str, str]] = field(factory=list)
    dead: list[DeadRow] = field(factory=list)
    redelivered: list[int] = field(factory=list)
    forget_below: int | None = None
    attempted: list[int] = field(factory=list)
    events: list[EventRow] = field(factory=list)
    snapshots: list[SnapshotRow] = field(factory=list)
    answers: list[AnswerRow] = field(factory=list)
    forgotten: list[EntityKey] = field(factory=list)
    history: list[HistoryRow] = field(factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.attempted
            or self.entities
            or self.events
            or self.mail
            or self.timers
            or self.fired
            or self.cancelled
            or self.forgotten
            or self.cancels
            or self.dead
            or self.redelivered
            or self.forget_below is not None
        )


@frozen
class Recovery:
    """What `Store.open` finds: where ids resume and the work left to do.

    `suspects`: when the last session did not close cleanly (a crash, a
    kill), the unconsumed mail it may have been running, by id, with how
    many times it was already being run when a session died (`attempted`).
    """

    next_id: int
    mail: list[MailRow]
    timers: list[TimerRow]
    suspects: dict[int, int] = field(factory=dict)
    calls: frozenset[int] = frozenset()
    """Ids of `mail` whose sender, in another process, awaits an answer."""


@frozen
class News:
    """What changed since the last `news()` (see the module's design note)."""

    lost: frozenset[int] = frozenset()
    """Scopes no longer owned: drop their entities from memory."""
    gained: Recovery | None = None
    """Unconsumed mail, timers and suspects of scopes newly owned."""
    mail: list[MailRow] = field(factory=list)
    """Mail of owned scopes written by other processes, in arrival order."""
    timers: list[TimerRow] = field(factory=list)
    """Timers of owned scopes written by other processes."""
    calls: frozenset[int] = frozenset()
    """Ids of `mail` whose sender awaits an answer."""


class FencedError(PachytypeError):
    """A commit touched scopes this store no longer owns; nothing of it was written."""

    def __init__(self, scopes: frozenset[int], detail: str) -> None:
        self.scopes = scopes
        super().__init__(
            f"commit refused: this process no longer owns scope(s) {sorted(scopes)} "
            f"({detail}); nothing of the batch was written, and its entities are "
            f"reloaded from the store by whichever process owns them now"
        )


class Store(Protocol):
    """Durable storage for one ecosystem (see the module's design note)."""

    async def open(self, fingerprint: str, wake: Callable[[], None]) -> Recovery:
        """Take the writer's lock (or leases), create the schema if new, and
        return the unconsumed mail (id order) and pending timers of what it
        owns; ring `wake` whenever `news()` has something."""
        ...

    def scope_of(self, entity_type: str, id_text: str) -> int:
        """The scope (unit of ownership) of an entity; pure, the same everywhere."""
        ...

    def followed(self) -> set[EntityKey] | frozenset[EntityKey]:
        """Entities followed in other processes (a live set the store updates):
        each of their committed states goes in `CommitBatch.history`."""
        ...

    def owned(self) -> frozenset[int] | None:
        """The scopes owned now (None: every scope, for good); read by the runtime
        after `open` and after each `news()`."""
        ...

    overlaps: bool
    """Whether a commit waits on I/O the event loop does not run (a database
    server): then the runtime takes mail (`news()` while `steady()`), reads
    states and builds the next batch while a commit is under way, and sends
    that batch once the commit is done (commits stay one at a time, in
    build order). False: every call runs to its end in turn."""

    def steady(self) -> bool:
        """No scope is lost without the runtime knowing: a `news()` now would
        bring mail, timers, calls and recovery pages of scopes already told
        of, so it may run while a commit is under way."""
        ...

    async def news(self) -> News:
        """Ownership changes and mail from other processes since the last call
        (after a `FencedError`: a `Recovery` of every scope still owned)."""
        ...

    async def commit(self, batch: CommitBatch) -> None:
        """Write `batch` atomically; return once it is durable. Raise
        `FencedError`, writing nothing, if a scope it touches is no longer owned."""
        ...

    async def leave(self, scopes: frozenset[int], recent: list[EntityRow]) -> None:
        """After `news()` said `scopes` are lost: write `recent` (rows of their
        entities that change only the recent messages) where their scope is
        still this store's as it was before `news()`, nothing elsewhere; never
        raises (the rows are context, not state)."""
        ...

    async def load_states(self, keys: Sequence[EntityKey]) -> dict[EntityKey, StoredState]:
        """Committed states of `keys` (entities never committed are absent)."""
        ...

    async def dead_letters(self) -> list[DeadRow]:
        """Every stored dead letter, oldest first."""
        ...

    async def load_journals(self, keys: Sequence[EntityKey]) -> dict[EntityKey, Journal]:
        """Latest snapshot and later events of event-sourced `keys` (entities
        with neither are absent). Must reflect the last finished `commit`."""
        ...

    async def read_events(
        self, entity_type: str, id_text: str | None, after: int, limit: int
    ) -> list[LogRow]:
        """Up to `limit` committed events in log order: of one entity (`id_text`)
        with a sequence number above `after`, or of every entity of the type
        (`id_text` None) with a log position above `after`."""
        ...

    async def close(self) -> None:
        """Release the lock and every resource (idempotent)."""
        ...
