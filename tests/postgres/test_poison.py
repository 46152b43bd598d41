"""A message that kills its node process, on PostgreSQL (issue 10 item 3):
the attempts at mail that was running when a node died are counted in the
database before it runs again, so the next node runs the suspects apart,
and a message that was running `MAX_ATTEMPTS` times when its process died
is dead-lettered without running again (as on LocalDisk: one run before
it is suspect, then `MAX_ATTEMPTS` counted ones). Real `pachytype node` processes,
real SIGKILLs (the message kills the process that runs it); every
acknowledged innocent message applied exactly once.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # no stubs published

from pachytype import Postgres
from pachytype._postgres.testing import (
    drop_schemas,
    new_schema_name,
    require_postgres,
    spawn_node,
    stop_processes,
)
from pachytype._runtime.durable import MAX_ATTEMPTS
from tests.poison import refs
from tests.poison.refs import REGISTRY

JOBS = 20
EACH = 10  # messages per job before the killer, and as many after it
LEASE = 1.0


async def _until_settled_or_dead(client: Postgres, node: subprocess.Popen[bytes]) -> bool:
    """True once no mail waits (the node still alive), False if the node died first."""
    settled = asyncio.ensure_future(client.settle())
    try:
        while node.poll() is None:
            if settled.done():
                await settled
                return True
            await asyncio.sleep(0.05)
        return False
    finally:
        settled.cancel()


async def test_a_message_that_kills_its_node_is_dead_lettered_after_max_attempts(
    tmp_path: Path,
) -> None:
    dsn, schema = require_postgres(), new_schema_name("pt_poison")
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        async with Postgres(dsn, REGISTRY, schema=schema, node=False, partitions=4) as client:
            before = [refs.job(f"j{i % JOBS}").work() for i in range(JOBS * EACH)]
            after = [refs.job(f"j{i % JOBS}").work() for i in range(JOBS * EACH)]
            await client.send(*before, refs.job("bad").crash(), *after)  # acknowledged
            crashes = 0
            attempts_seen: list[int] = []
            while True:
                node = spawn_node(
                    dsn,
                    schema,
                    "tests.poison.refs:REGISTRY",
                    node_id=f"n{len(nodes)}",
                    lease=LEASE,
                    partitions=4,
                    log_dir=tmp_path,
                )
                nodes.append(node)
                if await asyncio.wait_for(_until_settled_or_dead(client, node), 120):
                    break
                assert node.returncode == -signal.SIGKILL, tmp_path / f"n{len(nodes) - 1}.log"
                crashes += 1
                assert crashes <= MAX_ATTEMPTS + 1, "the killer was never isolated"
                attempts_seen.append(await _attempts(dsn, schema))
            states = [await client.state(refs.job(f"j{i}")) for i in range(JOBS)]
            dead = await client.dead_letters()
            assert nodes[-1].poll() is None  # the last node runs on
    finally:
        stop_processes(nodes)
        drop_schemas(dsn, [schema])
    # The first run was not suspect; from then on each run was counted in the
    # database before it started (read after each death), and at MAX_ATTEMPTS
    # the next node dead-lettered it without running it.
    assert crashes == MAX_ATTEMPTS + 1
    assert attempts_seen == list(range(MAX_ATTEMPTS + 1))
    assert states == [2 * EACH] * JOBS  # every innocent message applied exactly once
    (letter,) = dead
    assert letter.to == refs.job("bad") and letter.error_type == "PoisonMessageError"
    assert letter.error.startswith(
        f"a message to entity 'job' (id 'bad') was being handled {MAX_ATTEMPTS} times when "
        f"its process died or its commit failed"
    )


async def _attempts(dsn: str, schema: str) -> int:
    """The highest attempt count the database holds for any waiting message."""
    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetchval(f'SELECT max(n) FROM "{schema}".attempts')
        return int(found or 0)
    finally:
        await conn.close()
