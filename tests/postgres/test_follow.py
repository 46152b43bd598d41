"""Following on PostgreSQL never skips a committed state: not one too big for a
notification, not one committed while the follower's LISTEN connection was
being killed and restored, and a notification anyone forges yields nothing
(followers read committed states from the tables; notifications are hints)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import orjson
import pytest

from pachytype import Postgres
from pachytype._postgres.lease import channel
from tests.test_postgres_workload import refs
from tests.test_postgres_workload.entities import PAGE_SIZE, PageState

CHANGES = 200


def _eco(dsn: str, schema: str, *, node: bool) -> Postgres:
    return Postgres(
        dsn,
        refs.REGISTRY,
        schema=schema,
        node=node,
        partitions=4,
        lease=timedelta(seconds=2),
        poll_interval=0.1,
    )


async def _kill_listener(conn: asyncpg.Connection, eco: Postgres) -> int:
    """Terminate `eco`'s LISTEN session; returns how many were killed."""
    killed: int = await conn.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
        f"pachytype {eco.schema} listen {eco.node_id}"[:63],
    )
    return killed


async def _listening(conn: asyncpg.Connection, eco: Postgres) -> None:
    """Wait until `eco` has a LISTEN session again."""
    name = f"pachytype {eco.schema} listen {eco.node_id}"[:63]
    while not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = $1)", name
    ):
        await asyncio.sleep(0.01)


async def test_a_follower_sees_every_big_state_in_order_across_a_listener_reconnect(
    schema: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    dsn, name = schema
    page = refs.page("home")
    forged = PageState(999, "forged")
    async with _eco(dsn, name, node=True) as node, _eco(dsn, name, node=False) as client:
        conn = await asyncpg.connect(dsn)
        seen: list[PageState] = []
        first = asyncio.Event()

        async def follow() -> None:
            async for state in client.follow(page):
                seen.append(state)
                first.set()
                if state.n >= CHANGES:
                    return

        follower = asyncio.create_task(follow())
        try:
            await asyncio.wait_for(first.wait(), 10)
            state_channel = channel(name, "state")
            # Anyone who can connect may NOTIFY: a forged state in the format
            # states used to travel in, and a forged hint before any change.
            await conn.execute(
                "SELECT pg_notify($1, $2)",
                state_channel,
                orjson.dumps(["page", '"home"', 1, 1, "Zm9yZ2Vk"]).decode(),
            )
            await conn.execute(
                "SELECT pg_notify($1, $2)", state_channel, orjson.dumps(["page", '"home"']).decode()
            )
            with caplog.at_level(logging.WARNING, logger="pachytype.postgres"):
                for n in range(1, CHANGES // 2 + 1):
                    await client.send(page.rewrite(n=n))
                assert await _kill_listener(conn, client) == 1
                for n in range(CHANGES // 2 + 1, CHANGES + 1):
                    await client.send(page.rewrite(n=n))
                await _listening(conn, client)
                await asyncio.wait_for(follower, 60)
            assert "LISTEN connection lost" in caplog.text
        finally:
            follower.cancel()
            await conn.close()
        assert node.node is not None
    assert [s.n for s in seen] == list(range(CHANGES + 1))
    assert forged not in seen
    for s in seen[1:]:
        assert len(s.body) == PAGE_SIZE and s.body.startswith(f"{s.n:08d}")
