"""The durable runtime under a store whose ownership moves (`pachytype._store`,
"Ownership and other writers"): scopes lost and gained, mail and calls from
other processes, fenced commits.

The store is LocalDisk's SQLite store with four scopes, of which it owns
what the test says; ownership moves when the test says so, as a Postgres
store reports partitions moving between nodes (fault injection on a real
store: every row really is written and read back). Every test runs twice:
with commits that run inline (as SQLite's do) and with commits that yield
to the event loop a few times (as a database server's round trip does),
so the runtime takes mail and builds the next batch while one is under way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import attrs
import pytest

from pachytype._codec import Codec
from pachytype._errors import PachytypeError
from pachytype._postgres.partition import partition_of
from pachytype._runtime.durable import DurableRuntime
from pachytype._sqlite import SqliteStore
from pachytype._sqlite.rows import recover, write
from pachytype._store import (
    AnswerRow,
    CommitBatch,
    EntityRow,
    FencedError,
    MailRow,
    News,
    Recovery,
)
from tests.conformance import refs
from tests.conformance.entities import Add, Fail, TallyId

SCOPES = 4


class MovingStore(SqliteStore):
    """SQLite, split in `SCOPES` scopes; owns `owned` until told otherwise."""

    def __init__(self, path: Path, owned: set[int], *, overlaps: bool = False) -> None:
        super().__init__(path)
        self.overlaps = overlaps
        self.beside = 0  # news() calls while a commit was under way
        self._committing = False
        self._during: list[MailRow] = []  # delivered during the next commit
        self._own = set(owned)
        self._lost: set[int] = set()
        self._gained: set[int] = set()
        self._fence = False
        self._fenced = False
        self._mail: list[MailRow] = []
        self._calls: set[int] = set()
        self._wake: Callable[[], None] = lambda: None
        self.answers: list[AnswerRow] = []
        self.commits = 0
        self.refused = 0
        self.left: list[EntityRow] = []
        self.open_gate = asyncio.Event()  # commits wait while it is clear
        self.open_gate.set()
        self.committing = asyncio.Event()  # a commit has begun

    async def open(self, fingerprint: str, wake: Callable[[], None]) -> Recovery:
        self._wake = wake
        return self._only(await super().open(fingerprint, wake), self._own)

    def _only(self, recovery: Recovery, scopes: set[int]) -> Recovery:
        return attrs.evolve(
            recovery,
            mail=[r for r in recovery.mail if self.scope_of(r[1], r[2]) in scopes],
            timers=[t for t in recovery.timers if self.scope_of(t[1], t[2]) in scopes],
            suspects={},
        )

    def scope_of(self, entity_type: str, id_text: str) -> int:
        return partition_of(entity_type, id_text, SCOPES)

    def owned(self) -> frozenset[int] | None:
        return frozenset(self._own)

    def lose(self, scopes: set[int]) -> None:
        self._own -= scopes
        self._lost |= scopes
        self._wake()

    def gain(self, scopes: set[int]) -> None:
        self._own |= scopes
        self._gained |= scopes
        self._wake()

    def fence_next_commit(self) -> None:
        self._fence = True

    def deliver_soon(self, row: MailRow) -> None:
        """Mail another process commits during the next commit here (or now,
        when commits run inline)."""
        if self.overlaps:
            self._during.append(row)
        else:
            self.deliver(row, call=False)

    def deliver(self, row: MailRow, *, call: bool) -> None:
        """Mail committed by another process to an owned scope."""
        write(self._c(), CommitBatch(mail=[row]))
        self._mail.append(row)
        if call:
            self._calls.add(row[0])
        self._wake()

    def steady(self) -> bool:
        return not (self._lost or self._gained or self._fenced)

    async def news(self) -> News:
        self.beside += self._committing
        if self._fenced:  # everything still owned, whoever took it
            self._fenced = False
            self._gained = set(self._own)
        gained = None
        if self._gained:
            gained = self._only(recover(self._c()), self._gained)
        news = News(
            lost=frozenset(self._lost),
            gained=gained,
            mail=self._mail,
            calls=frozenset(self._calls),
        )
        self._lost, self._gained, self._mail, self._calls = set(), set(), [], set()
        return news

    async def leave(self, scopes: frozenset[int], recent: list[EntityRow]) -> None:
        """As a Postgres store in a planned handover: written while still ours."""
        self.left.extend(recent)
        if recent:
            write(self._c(), CommitBatch(entities=recent))

    async def commit(self, batch: CommitBatch) -> None:
        if self.overlaps:
            assert not self._committing, "two commits at once"
            self._committing = True
            try:
                for _ in range(3):  # the round trip to a database server
                    await asyncio.sleep(0)
                    during, self._during = self._during, []
                    for row in during:
                        self.deliver(row, call=False)
            finally:
                self._committing = False
        if self._fence:
            self._fence, self._fenced = False, True
            self.refused += 1
            raise FencedError(frozenset(self._own), "injected by the test")
        self.committing.set()
        await self.open_gate.wait()  # a slow database, when the test says so
        await super().commit(batch)
        self.commits += 1
        self.answers.extend(batch.answers)


def _id_in(scope: int, prefix: str) -> TallyId:
    return next(
        TallyId(f"{prefix}{i}")
        for i in range(1000)
        if partition_of("tally", f"{prefix}{i}", SCOPES) == scope
    )


A = _id_in(0, "a")
B = _id_in(1, "b")


@pytest.fixture(params=["inline", "overlapping"])
async def runtime(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[DurableRuntime, MovingStore]]:
    overlaps = request.param == "overlapping"
    store = MovingStore(tmp_path / "eco.db", set(range(SCOPES)), overlaps=overlaps)
    rt = DurableRuntime(refs.REGISTRY, store, Codec(refs.REGISTRY))
    await rt.open()
    try:
        yield rt, store
    finally:
        await rt.stop()


async def _mailbox(store: MovingStore, id_text: str) -> int:
    found = store._c().execute(
        "SELECT count(*) FROM mailbox m JOIN entities e ON e.etype = m.etype AND e.eid = m.eid "
        "WHERE m.eid = ? AND m.id > e.consumed",
        (id_text,),
    )
    return int(found.fetchone()[0])


async def test_a_lost_scope_leaves_memory_and_its_mail_waits_for_whoever_gains_it(
    runtime: tuple[DurableRuntime, MovingStore],
) -> None:
    rt, store = runtime
    a, b = refs.tally(A), refs.tally(B)
    await rt.send_durably([a.add(n=1), b.add(n=1)])
    await rt.quiesce()
    store.lose({0})
    await rt.quiesce()
    await rt.send_durably([a.add(n=5), b.add(n=5)])
    await rt.quiesce()
    assert await rt.read_state(b) == 6
    assert await rt.read_state(a) == 1  # not run here: stored for its owner
    assert await _mailbox(store, A) == 1
    with pytest.raises(PachytypeError, match="owned by another process"):
        await rt.call(a.add(n=1))
    store.gain({0})
    await rt.quiesce()
    assert await rt.read_state(a) == 7  # both waiting messages, in order
    assert await _mailbox(store, A) == 0


async def test_a_fenced_commit_is_applied_in_no_part_and_its_senders_go_on(
    runtime: tuple[DurableRuntime, MovingStore],
) -> None:
    rt, store = runtime
    a, b = refs.tally(A), refs.tally(B)
    assert await rt.call(a.add(n=1)) == 1
    store.fence_next_commit()
    call = rt.call(b.add(n=10))
    await rt.send_durably([a.add(n=2), b.add(n=3)])
    assert await call == 10
    await rt.quiesce()
    assert store.refused == 1
    # Each message applied once: the refused batch left no trace anywhere.
    assert await rt.read_state(a) == 3
    assert await rt.read_state(b) == 13
    assert await _mailbox(store, A) == 0 and await _mailbox(store, B) == 0


async def test_mail_from_another_process_runs_in_order_and_its_callers_are_answered_in_the_commit(
    runtime: tuple[DurableRuntime, MovingStore],
) -> None:
    rt, store = runtime
    codec = Codec(refs.REGISTRY)
    a = refs.tally(A)
    await rt.send_durably([a.add(n=1)])
    await rt.quiesce()
    far = 10**12  # ids another process gives: outside the runtime's own range
    store.deliver((far, "tally", A, codec.encode_message("tally", Add(n=4))), call=True)
    store.deliver((far + 1, "tally", A, codec.encode_message("tally", Fail("no"))), call=True)
    store.deliver((far + 2, "tally", A, codec.encode_message("tally", Add(n=2))), call=False)
    await rt.quiesce()
    assert await rt.read_state(a) == 7
    assert [answer[:5] for answer in store.answers] == [
        (far, codec.encode_state("tally", 5), 1, None, None),
        (far + 1, None, 1, "RuntimeError", "no"),
    ]
    (dead,) = await rt.stored_dead_letters()
    assert dead.message == Fail("no")


async def test_a_flood_meets_mail_from_elsewhere_a_moving_scope_and_a_fence_each_message_once(
    runtime: tuple[DurableRuntime, MovingStore],
) -> None:
    rt, store = runtime
    codec = Codec(refs.REGISTRY)
    ids = [_id_in(scope, f"f{scope}-") for scope in range(SCOPES)]
    elsewhere = _id_in(2, "e")  # mail from another process only (this store keeps
    far = 10**12  # one consumed cursor per entity: its ids must not interleave)
    sent = {i: 0 for i in [*ids, elsewhere]}

    async def flood(rounds: int) -> None:
        for r in range(rounds):
            await rt.send_durably([refs.tally(i).add(n=1) for i in ids for _ in range(100)])
            for i in ids:
                sent[i] += 100
            if r % 3 == 1:
                encoded = codec.encode_message("tally", Add(n=7))
                store.deliver_soon((far + r, "tally", elsewhere, encoded))
                sent[elsewhere] += 7

    task = asyncio.create_task(flood(12))
    store.fence_next_commit()
    store.lose({1})
    await asyncio.sleep(0)
    store.gain({1})
    await task
    await rt.send_durably([refs.tally(ids[0]).add(n=0)])  # a last commit: delivers the rest
    await rt.quiesce()
    assert {i: await rt.read_state(refs.tally(i)) for i in sent} == sent
    assert store.refused == 1
    assert [await _mailbox(store, i) for i in sent] == [0] * len(sent)
    if store.overlaps:
        assert store.beside > 0  # mail was taken while a commit was under way


async def test_a_lost_scope_hands_its_recent_messages_to_the_store_and_the_next_owner_has_them(
    runtime: tuple[DurableRuntime, MovingStore],
) -> None:
    rt, store = runtime
    a, b = refs.tally(A), refs.tally(B)
    await rt.send_durably([a.add(n=1), b.add(n=1)])
    await rt.quiesce()
    store.lose({0})
    await rt.quiesce()
    assert [row[:2] for row in store.left] == [("tally", A)]  # only the lost scope's
    store.gain({0})
    await rt.send_durably([a.fail(reason="no")])
    await rt.quiesce()
    (dead,) = await rt.stored_dead_letters()
    assert dead.recent == (Add(n=1), Fail("no"))


async def test_a_stop_lets_the_commit_under_way_finish_and_notes_its_messages_once(
    tmp_path: Path,
) -> None:
    codec = Codec(refs.REGISTRY)
    store = MovingStore(tmp_path / "eco.db", set(range(SCOPES)))
    rt = DurableRuntime(refs.REGISTRY, store, codec)
    await rt.open()
    a = refs.tally(A)
    await rt.send_durably([a.add(n=1)])
    await rt.quiesce()
    store.open_gate.clear()
    store.committing.clear()
    # Stored by another process (a client): it stays stored until a commit consumes it.
    store.deliver((10**12, "tally", A, codec.encode_message("tally", Add(n=2))), call=False)
    await store.committing.wait()  # the batch that runs it is being written
    stopping = asyncio.ensure_future(rt.stop())
    await asyncio.sleep(0)  # one turn of the loop: the stop is under way (no timing)
    store.open_gate.set()
    await stopping
    again = DurableRuntime(
        refs.REGISTRY, MovingStore(tmp_path / "eco.db", set(range(SCOPES))), codec
    )
    await again.open()
    try:
        await again.send_durably([a.fail(reason="no")])
        await again.quiesce()
        assert await again.read_state(a) == 3  # the message ran once
        (dead,) = await again.stored_dead_letters()
        assert dead.recent == (Add(n=1), Add(n=2), Fail("no"))
    finally:
        await again.stop()


async def test_a_refused_batch_gives_back_the_recent_messages_its_turns_pushed_out(
    runtime: tuple[DurableRuntime, MovingStore],
) -> None:
    rt, store = runtime
    a = refs.tally(A)
    await rt.send_durably([a.add(n=1)] * 5)
    await rt.quiesce()
    store.fence_next_commit()
    # One turn of six: with the five before, one more than a dead letter keeps.
    await rt.send_durably([a.fail(reason="no"), *[a.add(n=2)] * 5])
    await rt.quiesce()
    assert store.refused == 1
    (dead,) = await rt.stored_dead_letters()
    assert dead.recent == (*[Add(n=1)] * 5, Fail("no"))
    assert await rt.read_state(a) == 15
