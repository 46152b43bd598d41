"""Asks leave no inbox behind (`pachytype._inbox`): once an ask is answered,
or times out, its inbox entity's state is deleted, and an answer that comes
after the asker gave up is not stored; on every ecosystem."""

from __future__ import annotations

import sqlite3

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest

from pachytype import DeadlineError, Ecosystem, InMemory, LocalDisk, Postgres
from pachytype._inbox import INBOX
from pachytype._postgres.testing import drop_schemas, new_schema_name, require_postgres
from pachytype.simulation._ecosystem import SimulatedEcosystem
from pachytype.testing import EcosystemFactory
from tests.conformance import refs as conformance
from tests.conformance.entities import Append


async def inboxes(eco: Ecosystem) -> int:
    """How many inbox states `eco` keeps, read where it keeps them."""
    if isinstance(eco, InMemory):
        return sum(1 for key in eco._rt.states if key[0] == INBOX)
    if isinstance(eco, LocalDisk):
        with sqlite3.connect(eco.path) as conn:
            (n,) = conn.execute(
                "SELECT count(*) FROM entities WHERE etype = ?", (INBOX,)
            ).fetchone()
            return int(n)
    if isinstance(eco, Postgres):
        pool = eco._open_pool()
        return int(
            await pool.fetchval(
                f"SELECT count(*) FROM {eco._s}.states WHERE entity_type = $1", INBOX
            )
        )
    assert isinstance(eco, SimulatedEcosystem)
    return sum(1 for key in eco.simulation._world.states if key[0] == INBOX)


async def test_answered_asks_leave_no_inbox(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(conformance.REGISTRY) as eco:
        for value in range(5):
            answer = await eco.ask(
                # An Emit sends its values to `to` at once: the inbox gets Append(value).
                lambda r, v=value: conformance.emitter("e").emit(to=r, values=(v,)),  # type: ignore[arg-type,misc]  # no reply_to field, on purpose
                timeout=10.0,
            )
            assert answer == Append(value)
        assert await inboxes(eco) == 0


async def test_an_answer_after_the_deadline_is_not_kept(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(conformance.REGISTRY) as eco:
        log = conformance.log(1)
        with pytest.raises(DeadlineError):
            # The "answer" (an Append the inbox accepts) comes 300 ms later.
            await eco.ask(
                lambda r: conformance.emitter("e").remind(to=r, value=1, delay_ms=300),  # type: ignore[arg-type,return-value]  # an envelope with no reply_to, on purpose
                timeout=0.1,
            )
        assert await inboxes(eco) == 0
        # Once a later reminder arrived, the late answer was handled too.
        await eco.send(conformance.emitter("e").remind(to=log, value=2, delay_ms=700))
        async for state in eco.follow(log):
            if state:
                break
        await eco.settle()
        assert await inboxes(eco) == 0


async def test_postgres_sweeps_the_inboxes_nobody_follows() -> None:
    """An asker that died mid-ask leaves its inbox's row: the sweep deletes
    the inbox rows nobody watches, and keeps a watched one (an ask under way)."""
    dsn = require_postgres()
    schema = new_schema_name()
    try:
        async with Postgres(dsn, conformance.REGISTRY, schema=schema, partitions=4) as eco:
            assert eco.node is not None
            s = f'"{schema}"'
            conn = await asyncpg.connect(dsn)
            try:
                for eid in ("orphan", "asking"):
                    await conn.execute(
                        f"INSERT INTO {s}.states (entity_type, entity_id, partition, version, "
                        f"data, activations) VALUES ($1, $2, 0, 1, '\\x00', 1)",
                        INBOX,
                        eid,
                    )
                await conn.execute(
                    f"INSERT INTO {s}.watches (watch_id, node_id, entity_type, entity_id) "
                    f"VALUES (gen_random_uuid(), 'n', $1, 'asking')",
                    INBOX,
                )
                await eco.node.membership.sweep(conn)
                left = await conn.fetch(
                    f"SELECT entity_id FROM {s}.states WHERE entity_type = $1", INBOX
                )
                assert [r[0] for r in left] == ["asking"]
            finally:
                await conn.close()
    finally:
        drop_schemas(dsn, [schema])
