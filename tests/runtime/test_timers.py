"""Keyed timers on every ecosystem: a later timer of the same key replaces the
pending one, `activate` cancels one by returning `address.cancel_timer(key)`,
a failed activation cancels nothing, and the pending ones survive a restart
on durable ecosystems (the rule: `pachytype._core.timers`).

Absence is shown without sleeping: each test ends with an unkeyed "marker"
timer due after every other one; once the marker arrived, a timer that was
not cancelled would have arrived before it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest

from pachytype import Ecosystem, LocalDisk, PachytypeError, Postgres
from pachytype._postgres.testing import drop_schemas, new_schema_name, require_postgres
from pachytype.testing import EcosystemFactory
from tests.conformance import refs
from tests.conformance.refs import REGISTRY

MARKER = 999


def ops(*items: tuple[str, str, int, int]) -> tuple[tuple[str, str, int, int], ...]:
    return items


def set_(key: str, value: int, ms: int) -> tuple[str, str, int, int]:
    return ("set", key, value, ms)


def cancel(key: str) -> tuple[str, str, int, int]:
    return ("cancel", key, 0, 0)


async def until_marker(eco: Ecosystem, log: refs.LogRef) -> tuple[int, ...]:
    """Follow `log` until the marker arrived; its state then."""
    async for state in eco.follow(log):
        if MARKER in state:
            return state
    raise AssertionError("the ecosystem closed first")


async def test_a_later_timer_of_the_same_key_replaces_the_pending_one(
    ecosystem: EcosystemFactory,
) -> None:
    log = refs.log(10)
    async with ecosystem(REGISTRY) as eco:
        await eco.call(refs.emitter("e").plan(to=log, ops=ops(set_("k", 1, 200))))
        await eco.call(refs.emitter("e").plan(to=log, ops=ops(set_("k", 2, 100))))
        await eco.send(refs.emitter("m").remind(to=log, value=MARKER, delay_ms=400))
        assert await until_marker(eco, log) == (2, MARKER)


async def test_timers_of_other_keys_or_other_targets_are_not_replaced(
    ecosystem: EcosystemFactory,
) -> None:
    a, b = refs.log(11), refs.log(12)
    async with ecosystem(REGISTRY) as eco:
        await eco.call(refs.emitter("e").plan(to=a, ops=ops(set_("k", 1, 100), set_("j", 2, 150))))
        await eco.call(refs.emitter("e").plan(to=b, ops=ops(set_("k", 3, 100))))
        await eco.send(refs.emitter("m").remind(to=a, value=MARKER, delay_ms=300))
        assert await until_marker(eco, a) == (1, 2, MARKER)
        async for state in eco.follow(b):
            if state:
                assert state == (3,)
                break


async def test_activate_cancels_a_pending_timer(ecosystem: EcosystemFactory) -> None:
    log = refs.log(13)
    async with ecosystem(REGISTRY) as eco:
        await eco.call(refs.emitter("e").plan(to=log, ops=ops(set_("k", 1, 150))))
        await eco.call(refs.emitter("other").plan(to=log, ops=ops(cancel("k"))))
        await eco.call(refs.emitter("e").plan(to=log, ops=ops(cancel("nothing-set"))))
        await eco.send(refs.emitter("m").remind(to=log, value=MARKER, delay_ms=300))
        assert await until_marker(eco, log) == (MARKER,)


async def test_in_one_activation_set_cancel_and_set_again_apply_in_order(
    ecosystem: EcosystemFactory,
) -> None:
    log = refs.log(14)
    plan = ops(set_("k", 1, 100), cancel("k"), set_("j", 2, 100), set_("j", 3, 150))
    async with ecosystem(REGISTRY) as eco:
        await eco.call(refs.emitter("e").plan(to=log, ops=plan))
        await eco.send(refs.emitter("m").remind(to=log, value=MARKER, delay_ms=300))
        assert await until_marker(eco, log) == (3, MARKER)


async def test_a_failed_activation_cancels_nothing(ecosystem: EcosystemFactory) -> None:
    log = refs.log(15)
    async with ecosystem(REGISTRY) as eco:
        await eco.call(refs.emitter("e").plan(to=log, ops=ops(set_("k", 1, 150))))
        with pytest.raises(PachytypeError, match="the plan fails"):
            await eco.call(refs.emitter("e").plan(to=log, ops=ops(cancel("k"), ("fail", "", 0, 0))))
        await eco.send(refs.emitter("m").remind(to=log, value=MARKER, delay_ms=300))
        assert await until_marker(eco, log) == (1, MARKER)


async def test_a_keyed_timer_sent_from_outside_replaces_one_set_by_an_entity(
    ecosystem: EcosystemFactory,
) -> None:
    log = refs.log(16)
    async with ecosystem(REGISTRY) as eco:
        await eco.call(refs.emitter("e").plan(to=log, ops=ops(set_("k", 1, 150))))
        await eco.send(log.append(value=2).after(timedelta(milliseconds=100), key="k"))
        await eco.send(refs.emitter("m").remind(to=log, value=MARKER, delay_ms=300))
        assert await until_marker(eco, log) == (2, MARKER)


async def test_a_keyed_envelope_without_delay_is_delivered_at_once_and_replaces(
    ecosystem: EcosystemFactory,
) -> None:
    log = refs.log(17)
    async with ecosystem(REGISTRY) as eco:
        await eco.call(refs.emitter("e").plan(to=log, ops=ops(set_("k", 1, 150))))
        assert await eco.call(log.append(value=2).after(timedelta(0), key="k")) == (2,)
        await eco.send(refs.emitter("m").remind(to=log, value=MARKER, delay_ms=300))
        assert await until_marker(eco, log) == (2, MARKER)


def test_a_timer_key_must_be_a_non_empty_string() -> None:
    with pytest.raises(TypeError, match=r"a timer key must be a non-empty str, got '' for"):
        refs.log(1).append(value=1).after(timedelta(seconds=1), key="")
    with pytest.raises(TypeError, match=r"a timer key must be a non-empty str, got 3 for"):
        refs.log(1).cancel_timer(3)  # type: ignore[arg-type]  # on purpose


@pytest.mark.durable
async def test_pending_keyed_timers_survive_a_restart(ecosystem: EcosystemFactory) -> None:
    replaced, cancelled = refs.log(20), refs.log(21)
    # The first timers must still be pending after the close and reopen (which
    # take a few hundred ms on a loaded machine), and the marker must come after
    # their due time, so that a timer neither replaced nor cancelled shows.
    first_ms, marker_ms = 2_000, 2_100
    async with ecosystem(REGISTRY) as eco:
        await eco.call(refs.emitter("e").plan(to=replaced, ops=ops(set_("k", 1, first_ms))))
        await eco.call(refs.emitter("e").plan(to=cancelled, ops=ops(set_("k", 1, first_ms))))
    async with ecosystem(REGISTRY) as eco:
        # Reopened: the timers set before are still pending, replaced and cancelled by key.
        await eco.call(refs.emitter("e").plan(to=replaced, ops=ops(set_("k", 2, 100))))
        await eco.call(refs.emitter("e").plan(to=cancelled, ops=ops(cancel("k"))))
        await eco.send(refs.emitter("m").remind(to=replaced, value=MARKER, delay_ms=marker_ms))
        await eco.send(refs.emitter("m").remind(to=cancelled, value=MARKER, delay_ms=marker_ms))
        assert await until_marker(eco, replaced) == (2, MARKER)
        assert await until_marker(eco, cancelled) == (MARKER,)


@pytest.mark.durable
async def test_a_pending_keyed_timer_left_alone_fires_after_a_restart(
    ecosystem: EcosystemFactory,
) -> None:
    log = refs.log(22)
    async with ecosystem(REGISTRY) as eco:
        await eco.call(refs.emitter("e").plan(to=log, ops=ops(set_("k", 1, 200))))
    async with ecosystem(REGISTRY) as eco:
        async for state in eco.follow(log):
            if state:
                assert state == (1,)
                break


async def test_a_localdisk_database_from_before_keyed_timers_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    log = refs.log(30)
    async with LocalDisk(path, REGISTRY) as eco:
        await eco.send(refs.emitter("e").remind(to=log, value=1, delay_ms=300))
        await eco.settle()
    with sqlite3.connect(path) as conn:  # the timers table as it was before keyed timers
        conn.execute("ALTER TABLE timers DROP COLUMN tkey")
        assert "tkey" not in {row[1] for row in conn.execute("PRAGMA table_info(timers)")}
    async with LocalDisk(path, REGISTRY) as eco:
        await eco.call(
            refs.emitter("e").plan(to=log, ops=ops(set_("k", 2, 100), set_("k", 3, 200)))
        )
        await eco.send(refs.emitter("m").remind(to=log, value=MARKER, delay_ms=500))
        # The old timer fired (in either order with the new one); the replaced one never.
        assert sorted(await until_marker(eco, log)) == [1, 3, MARKER]


async def test_a_call_whose_keyed_timer_is_replaced_is_answered_at_once(
    ecosystem: EcosystemFactory,
) -> None:
    """Its message will never be delivered: the caller hears so when the timer
    is replaced, not at the old timer's due time (a minute away here)."""
    log = refs.log(19)
    async with ecosystem(REGISTRY) as eco:
        waiting = asyncio.ensure_future(
            eco.call(log.append(value=1).after(timedelta(minutes=1), key="k"))
        )
        await asyncio.sleep(0)  # the call's envelope goes in first (one step: no await in it)
        await eco.send(log.append(value=2).after(timedelta(milliseconds=50), key="k"))
        with pytest.raises(PachytypeError, match="replaced by a later timer of that key"):
            await asyncio.wait_for(waiting, 10)
        await eco.send(refs.emitter("m").remind(to=log, value=MARKER, delay_ms=200))
        assert await until_marker(eco, log) == (2, MARKER)


async def test_a_call_whose_keyed_timer_is_cancelled_is_answered_at_once(
    ecosystem: EcosystemFactory,
) -> None:
    log = refs.log(23)
    async with ecosystem(REGISTRY) as eco:
        waiting = asyncio.ensure_future(
            eco.call(log.append(value=1).after(timedelta(minutes=1), key="k"))
        )
        await asyncio.sleep(0)  # the call's envelope goes in first
        await eco.call(refs.emitter("x").plan(to=log, ops=ops(cancel("k"))))
        with pytest.raises(PachytypeError, match=r"timer 'k' of .* was cancelled"):
            await asyncio.wait_for(waiting, 10)
        await eco.send(refs.emitter("m").remind(to=log, value=MARKER, delay_ms=100))
        assert await until_marker(eco, log) == (MARKER,)


@pytest.mark.parametrize("how", ["replaced from another client", "cancelled by an activation"])
async def test_on_postgres_a_committed_call_behind_a_dropped_timer_is_answered_at_once(
    how: str,
) -> None:
    """The call's timer row is stored (and armed by its owner) before another
    ecosystem replaces it, or an activation cancels it: the caller (a client:
    only the database can tell it) is answered within a poll, not a minute
    later, and its call is not sent again (a resend would set the dropped
    timer once more)."""
    dsn, schema = require_postgres(), new_schema_name()
    log = refs.log(40)
    try:
        async with (
            Postgres(dsn, REGISTRY, schema=schema, partitions=4, poll_interval=0.1) as node,
            Postgres(dsn, REGISTRY, schema=schema, node=False, poll_interval=0.1) as other,
        ):
            waiting = asyncio.ensure_future(
                other.call(log.append(value=1).after(timedelta(minutes=1), key="k"))
            )
            conn = await asyncpg.connect(dsn)
            try:
                stored = f"SELECT count(*) FROM {schema}.mailbox WHERE timer_key = 'k'"
                while not await conn.fetchval(stored):
                    await asyncio.sleep(0.01)
                started = time.monotonic()
                if how == "replaced from another client":
                    await node.send(log.append(value=2).after(timedelta(seconds=0.05), key="k"))
                else:
                    await node.call(refs.emitter("x").plan(to=log, ops=ops(cancel("k"))))
                with pytest.raises(PachytypeError, match="replaced by a later timer of that key"):
                    await asyncio.wait_for(waiting, 10)
                answered_in = time.monotonic() - started
                await other.send(refs.emitter("m").remind(to=log, value=MARKER, delay_ms=300))
                expected = (2, MARKER) if how.startswith("replaced") else (MARKER,)
                assert await until_marker(other, log) == expected
                assert await conn.fetchval(stored) == 0  # not set again by a resend
            finally:
                await conn.close()
        assert answered_in < 2, f"answered after {answered_in:.2f} s"
    finally:
        drop_schemas(dsn, [schema])
