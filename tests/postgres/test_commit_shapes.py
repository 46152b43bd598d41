"""The Postgres commit statement is built per shape (the parts a batch has,
`pachytype._postgres.sql`): every shape's text runs with the parameters its
parts are given, writes exactly what those parts say and nothing else, and
writes nothing at all when the fence refuses it."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pachytype._core.timers import DROPPED
from pachytype._inbox import INBOX
from pachytype._postgres import sql
from pachytype._postgres.schema import migrate
from pachytype._postgres.testing import drop_schemas, new_schema_name, require_postgres

NODE: Final = "n1"
EPOCH: Final = 3
NIL: Final = uuid.UUID(int=0)
ANSWERED: Final = uuid.UUID(int=1)
DEDUPED: Final = uuid.UUID(int=2)
KEYED: Final = uuid.UUID(int=3)
NOW: Final = 1_000_000.0
"""The commit's clock (`due` of the pending keyed timer is after it)."""


@pytest.fixture(scope="module")
def schema() -> Iterator[tuple[str, str]]:
    dsn = require_postgres()
    name = new_schema_name()
    yield dsn, name
    drop_schemas(dsn, [name])


def part_args(part: int, dead_seq: int) -> list[Any]:
    """The parameters of `part` in a commit by `NODE` of partitions 0 and 1
    (the rows `seed` wrote are those it consumes, replaces or removes)."""
    args: dict[int, list[Any]] = {
        sql.WATCHED: [["Tally"], ["unwatched"]],
        sql.FIRED: [[0], [1002]],
        sql.DELETED: [[0], [1001]],
        sql.STATES: [["Tally"], ["a"], [0], [1], [b"A"], [2], [None], INBOX],
        sql.HISTORY: [["Tally"], ["a"], [1], [2], [1], [b"A"]],  # the first of two
        sql.MAIL: [[3001], [1], ["Tally"], ["b"], [b"M"], [None], [None], NIL],
        sql.REPLACED: [["Tally"], ["k"], ["tick"], NOW],
        sql.ANSWERS: [[ANSWERED], [1], [b"R"], [None], [None]],
        sql.DEDUPE: [[DEDUPED]],
        sql.UNATTEMPT: [[2001]],
        sql.ATTEMPTED: [[2002]],
        sql.SNAPSHOTS: [["Log"], ["s"], [5], [b"S"], [1]],
        sql.REDELIVERED: [[dead_seq]],
        sql.FORGOTTEN: [["Tally"], ["gone"]],
        sql.NOTICES: [["pachytype_test_shapes"], ["hello"]],
    }
    return args[part]


async def seed(conn: asyncpg.Connection, s: str) -> int:
    """Rows the parts act on; returns the dead letter's seq."""
    await conn.execute(
        f"UPDATE {s}.leases SET owner = $1, epoch = $2, expires_at = 'infinity'", NODE, EPOCH
    )
    await conn.execute(
        f"INSERT INTO {s}.mailbox (seq, partition, entity_type, entity_id, payload, msg_id, "
        f"due, timer_key, reply) VALUES (1001, 0, 'Tally', 'a', '\\x00', $1, NULL, NULL, false), "
        f"(1002, 0, 'Tally', 'a', '\\x00', $1, 1.0, NULL, false), "
        f"(1003, 1, 'Tally', 'k', '\\x00', $2, $3 + 60, 'tick', true)",
        NIL,
        KEYED,
        NOW,
    )
    await conn.execute(
        f"INSERT INTO {s}.states (entity_type, entity_id, partition, version, data, activations) "
        f"VALUES ('Tally', 'gone', 0, 1, '\\x01', 1)"
    )
    await conn.execute(f"INSERT INTO {s}.attempts (seq, n) VALUES (2001, 1)")
    return int(
        await conn.fetchval(
            f"INSERT INTO {s}.dead_letters (entity_type, entity_id, message, error_type, error, "
            f"traceback, recent) VALUES ('Tally', 'x', '\\x00', 'E', 'e', '', '{{}}') "
            f"RETURNING seq"
        )
    )


async def written(conn: asyncpg.Connection, s: str, dead_seq: int) -> set[int]:
    """The parts whose writes are in the database (WATCHED, FIRED and NOTICES
    write nothing: they are told by the statement's result)."""

    async def there(query: str, *args: Any) -> bool:
        return bool(await conn.fetchval(f"SELECT EXISTS ({query})", *args))

    found = {
        sql.DELETED: not await there(f"SELECT 1 FROM {s}.mailbox WHERE seq = 1001"),
        sql.STATES: await there(
            f"SELECT 1 FROM {s}.states WHERE entity_id = 'a' AND data = '\\x41' AND activations = 2"
        ),
        sql.HISTORY: await there(
            f"SELECT 1 FROM {s}.history WHERE entity_id = 'a' AND activations = 1"
        ),
        sql.MAIL: await there(
            f"SELECT 1 FROM {s}.mailbox WHERE seq = 3001 AND partition = 1 AND msg_id = $1",
            NIL,
        ),
        sql.REPLACED: not await there(f"SELECT 1 FROM {s}.mailbox WHERE seq = 1003")
        and await there(
            f"SELECT 1 FROM {s}.dedupe WHERE msg_id = $1 AND error_type = $2", KEYED, DROPPED
        ),
        sql.ANSWERS: await there(
            f"SELECT 1 FROM {s}.dedupe WHERE msg_id = $1 AND data = '\\x52'", ANSWERED
        ),
        sql.DEDUPE: await there(
            f"SELECT 1 FROM {s}.dedupe WHERE msg_id = $1 AND data IS NULL", DEDUPED
        ),
        sql.UNATTEMPT: not await there(f"SELECT 1 FROM {s}.attempts WHERE seq = 2001"),
        sql.ATTEMPTED: await there(f"SELECT 1 FROM {s}.attempts WHERE seq = 2002 AND n = 1"),
        sql.SNAPSHOTS: await there(f"SELECT 1 FROM {s}.snapshots WHERE entity_id = 's'"),
        sql.REDELIVERED: not await there(
            f"SELECT 1 FROM {s}.dead_letters WHERE seq = $1", dead_seq
        ),
        sql.FORGOTTEN: not await there(f"SELECT 1 FROM {s}.states WHERE entity_id = 'gone'"),
    }
    # A write that is not there must not be half there either.
    if not found[sql.REPLACED]:
        assert await there(f"SELECT 1 FROM {s}.mailbox WHERE seq = 1003")
    return {part for part, yes in found.items() if yes}


async def commit_once(
    schema: tuple[str, str], shape: int, *, epoch: int = EPOCH, setup: str = ""
) -> tuple[Any, set[int]]:
    """Run the statement of `shape` once, on the seeded rows (then `setup`),
    in a transaction rolled back after: its result row and the parts written."""
    dsn, name = schema
    s = f'"{name}"'
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, name, 2)
        tx = conn.transaction()
        await tx.start()
        try:
            dead_seq = await seed(conn, s)
            if setup:
                await conn.execute(setup.format(s=s))
            args: list[Any] = [[0, 1], [EPOCH, epoch], NODE]
            for part, width in sql.PARTS:
                if shape & part:
                    given = part_args(part, dead_seq)
                    assert len(given) == width
                    args += given
            result = await conn.fetchrow(sql.commit_statement(s, shape), *args)
            return result, await written(conn, s, dead_seq)
        finally:
            await tx.rollback()
    finally:
        await conn.close()


WRITES: Final = sql.ALL & ~(sql.WATCHED | sql.FIRED | sql.NOTICES)
"""The parts that write rows (the others are checks or notifications)."""

shapes = st.sets(st.sampled_from([part for part, _ in sql.PARTS])).map(
    lambda parts: sum(parts) | (sql.STATES if sql.HISTORY in parts else 0)
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(shape=shapes)
@example(shape=0)
@example(shape=sql.ALL)
@example(shape=sql.WATCHED | sql.DELETED | sql.STATES | sql.ANSWERS | sql.NOTICES)  # a call
async def test_a_shape_writes_exactly_its_parts(schema: tuple[str, str], shape: int) -> None:
    result, parts = await commit_once(schema, shape)
    go, watched_t, fired_ok, watched_e, notified, moved = result
    assert (go, watched_t, fired_ok, watched_e, moved) == (True, None, True, None, False)
    assert notified == (1 if shape & sql.NOTICES else 0)
    assert parts == {part for part, _ in sql.PARTS if shape & part & WRITES}


@pytest.mark.parametrize("part", [part for part, _ in sql.PARTS])
async def test_each_part_alone_writes_only_itself(schema: tuple[str, str], part: int) -> None:
    shape = part | (sql.STATES if part == sql.HISTORY else 0)
    result, parts = await commit_once(schema, shape)
    assert result[0] is True
    assert parts == {p for p, _ in sql.PARTS if shape & p & WRITES}


async def test_a_stale_epoch_writes_nothing(schema: tuple[str, str]) -> None:
    result, parts = await commit_once(schema, sql.ALL, epoch=EPOCH - 1)
    assert result[0] is False
    assert result[4] == 0  # no notification either
    assert parts == set()


async def test_an_entity_followed_meanwhile_writes_nothing_and_is_named(
    schema: tuple[str, str],
) -> None:
    follow = (
        "INSERT INTO {s}.watches (watch_id, node_id, entity_type, entity_id) "
        "VALUES (gen_random_uuid(), 'f', 'Tally', 'unwatched')"
    )
    result, parts = await commit_once(schema, sql.ALL, setup=follow)
    assert (result[0], result[1], result[3]) == (False, ["Tally"], ["unwatched"])
    assert parts == set()
    # Without the part that names the batch's entities, nothing is checked.
    result, parts = await commit_once(schema, sql.DELETED, setup=follow)
    assert result[0] is True
    assert parts == {sql.DELETED}


async def test_a_fired_timer_gone_elsewhere_writes_nothing(schema: tuple[str, str]) -> None:
    gone = "DELETE FROM {s}.mailbox WHERE seq = 1002"
    result, parts = await commit_once(schema, sql.ALL, setup=gone)
    assert (result[0], result[2]) == (False, False)
    assert parts == set()


@given(shape=shapes)
def test_a_shape_uses_every_parameter_it_is_given(shape: int) -> None:
    text = sql.commit_statement('"x"', shape)
    used = {int(n) for n in re.findall(r"\$(\d+)", text)}
    given = 3 + sum(width for part, width in sql.PARTS if shape & part)
    assert used == set(range(1, given + 1))


def test_a_shape_must_be_known_and_history_needs_states() -> None:
    with pytest.raises(ValueError, match="unknown parts"):
        sql.commit_statement('"x"', sql.ALL + 1)
    with pytest.raises(ValueError, match="history"):
        sql.commit_statement('"x"', sql.HISTORY)
