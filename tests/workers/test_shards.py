"""Workers spread their pending requests over shard entities
(`pachytype._worker`): thousands of requests pending at once drain on
Postgres (one entity holding them all stalled there: every intermediate
state of a batch was encoded, stored in `history` and read back by each
runner), and the shards share the work on every ecosystem."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pachytype import Ecosystem, Postgres, worker_state
from pachytype._address import Ref, make_ref
from pachytype._postgres.testing import drop_schemas, new_schema_name, require_postgres
from pachytype._worker import WORKER_ID, WorkerState
from pachytype.testing import EcosystemFactory
from tests.bulk_workers import refs
from tests.bulk_workers.entities import Jobs


async def drained(eco: Ecosystem, board: str, n: int, timeout: float) -> int:
    """Follow the board until `n` jobs are done; the count then."""
    async with asyncio.timeout(timeout):
        async for done in eco.follow(refs.board(board)):
            if done >= n:
                return done
    raise AssertionError("the ecosystem closed")


def shard(i: int) -> Ref[object, WorkerState]:
    return make_ref(Ref, "jobs", i)


async def test_requests_are_spread_over_the_shards_and_all_done(
    ecosystem: EcosystemFactory,
) -> None:
    async with ecosystem(refs.REGISTRY) as eco:
        await eco.send(*(refs.jobs().job(n=i, reply_to=refs.board("b")) for i in range(200)))
        assert await drained(eco, "b", 200, timeout=60) == 200
        total = await worker_state(eco, refs.jobs())
        assert (total.completed, total.pending, total.next_seq) == (200, (), 200)
        assert (await eco.state(refs.jobs())).pending == ()  # the entrance holds none
        n = Jobs().shard_count()
        done = [(await eco.state(shard(i))).completed for i in range(1, n + 1)]
        assert sum(done) == 200 and all(d > 0 for d in done), done


def test_shares_of_concurrency_add_up_to_it() -> None:
    worker = Jobs()
    n = worker.shard_count()
    assert n == min(Jobs.shards, Jobs.concurrency)
    assert sum(worker.share(i) for i in range(1, n + 1)) == Jobs.concurrency
    assert worker.share(WORKER_ID) == Jobs.concurrency  # (requests stored before sharding)


def test_three_thousand_pending_requests_drain_on_postgres() -> None:
    dsn = require_postgres()
    schema = new_schema_name()
    n = 3000

    async def scenario() -> None:
        async with Postgres(
            dsn, refs.REGISTRY, schema=schema, partitions=8, lease=timedelta(seconds=5)
        ) as eco:
            await eco.send(*(refs.jobs().job(n=i, reply_to=refs.board("b")) for i in range(n)))
            assert await drained(eco, "b", n, timeout=240) == n
            total = await worker_state(eco, refs.jobs())
            assert (total.completed, total.pending) == (n, ())

    try:
        asyncio.run(scenario())
    finally:
        drop_schemas(dsn, [schema])
