"""The connection a Postgres store keeps for its claims and commits
(`_postgres/holdings.py`), without a server (a stand-in pool): one connection
from claim to commit to claim; a claim beside a commit under way on another,
given back; a connection that failed, or was lost, given back and replaced;
the kept one given back when the store closes."""

from __future__ import annotations

from pachytype._clock import SystemClock
from pachytype._postgres.holdings import StoreRecords
from pachytype._postgres.lease import Ownership


class _Conn:
    def __init__(self, n: int) -> None:
        self.n = n
        self.closed = False

    def is_closed(self) -> bool:
        return self.closed

    def terminate(self) -> None:
        self.closed = True


class _Pool:
    """Stands in for the asyncpg pool: numbered connections, and which are out."""

    def __init__(self) -> None:
        self.acquired = 0
        self.out: set[int] = set()

    async def acquire(self) -> _Conn:
        self.acquired += 1
        self.out.add(self.acquired)
        return _Conn(self.acquired)

    async def release(self, conn: _Conn) -> None:
        self.out.remove(conn.n)


def _store() -> tuple[StoreRecords, _Pool]:
    pool = _Pool()
    store = StoreRecords(
        pool,  # (stands in for the asyncpg pool)
        "s",
        4,
        "n1",
        Ownership(),
        lambda _p: True,
        lambda _i: False,
        lambda _i, _a: None,
        SystemClock(),
    )
    return store, pool


async def test_claims_and_commits_take_the_same_connection_without_the_pool() -> None:
    store, pool = _store()
    for _ in range(5):  # a claim, then a commit, as a node's cycle does
        conn = await store.borrow()
        await store.give_back(conn)
    assert pool.acquired == 1
    assert pool.out == {1}  # kept between the two


async def test_a_claim_beside_a_commit_takes_another_connection_and_gives_it_back() -> None:
    store, pool = _store()
    commit = await store.borrow()
    claim = await store.borrow()
    assert claim is not commit
    await store.give_back(claim)
    assert pool.out == {commit.n}
    await store.give_back(commit)
    assert await store.borrow() is commit


async def test_a_connection_whose_statement_failed_goes_back_and_is_replaced() -> None:
    store, pool = _store()
    conn = await store.borrow()
    await store.give_back(conn, failed=True)  # (its transaction or cancellation: the pool's)
    assert pool.out == set()
    again = await store.borrow()
    assert again is not conn
    await store.give_back(again)
    assert await store.borrow() is again


async def test_a_lost_connection_goes_back_and_is_replaced() -> None:
    store, pool = _store()
    conn = await store.borrow()
    await store.give_back(conn)
    conn.terminate()  # the server went away meanwhile
    again = await store.borrow()
    assert again is not conn
    assert pool.out == {again.n}


async def test_closing_gives_the_kept_connection_back_even_while_in_use() -> None:
    store, pool = _store()
    conn = await store.borrow()
    await store.give_back(conn)
    await store.release_kept()
    assert pool.out == set()
    # In use when the store closes: given back when its statement ends.
    store, pool = _store()
    conn = await store.borrow()
    await store.release_kept()
    assert pool.out == {conn.n}
    await store.give_back(conn)
    assert pool.out == set()
    # Closed, the store keeps nothing more.
    late = await store.borrow()
    await store.give_back(late)
    assert pool.out == set()
