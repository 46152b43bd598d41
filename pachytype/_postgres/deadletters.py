"""Dead letters on PostgreSQL as the ecosystem hands them out: listed and
decoded (`Postgres.dead_letters`), redelivered (the message back in the
mailbox, the dead letter deleted, in one transaction) or discarded."""

from __future__ import annotations

from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import attrs

from pachytype._codec import Codec
from pachytype._deadletter import DeadLetter
from pachytype._errors import PachytypeError
from pachytype._postgres.client import Row
from pachytype._registry import Registry
from pachytype._runtime.durable import decode_dead
from pachytype._store import DeadRow


async def dead_letters(
    pool: asyncpg.Pool, s: str, registry: Registry, codec: Codec
) -> list[DeadLetter]:
    """Every dead letter, oldest first, decoded as far as it decodes."""
    rows = await pool.fetch(
        f"SELECT seq, entity_type, entity_id, message, error_type, error, traceback, "
        f"state_version, state, recent, at FROM {s}.dead_letters ORDER BY seq"
    )
    return [_dead_letter(registry, codec, r) for r in rows]


def _dead_letter(registry: Registry, codec: Codec, r: Any) -> DeadLetter:
    """A stored dead letter, decoded as LocalDisk does: parts that do not
    decode (an undecodable message, say) stay raw bytes."""
    row = DeadRow(
        entity_type=r["entity_type"],
        id_text=r["entity_id"],
        message=r["message"],
        error_type=r["error_type"],
        error=r["error"],
        traceback=r["traceback"],
        state=r["state"],
        version=r["state_version"] or 0,
        recent=tuple(r["recent"]),
        at=0.0,
        id=r["seq"],
    )
    return attrs.evolve(decode_dead(registry, codec, row), at=r["at"])


def check_redeliverable(dead_letter: DeadLetter) -> None:
    """Refuse to redeliver a message that does not decode, saying what to do."""
    if isinstance(dead_letter.message, bytes):
        raise PachytypeError(
            f"dead letter #{dead_letter.seq} for {dead_letter.to!r} holds a message that "
            f"cannot be decoded ({dead_letter.error_type}: {dead_letter.error}); fix the "
            f"message classes so it decodes, then redeliver it"
        )


async def redeliver(
    pool: asyncpg.Pool, s: str, schema: str, mail_channel: str, dead_letter: DeadLetter, row: Row
) -> None:
    """Put `row` (the dead letter's message, encoded again) back in the
    mailbox and delete the dead letter, in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        await _delete_dead(conn, s, schema, dead_letter, "redeliver")
        await conn.execute(
            f"INSERT INTO {s}.mailbox (msg_id, partition, entity_type, entity_id, "
            f"payload, outside, reply) VALUES ($1, $2, $3, $4, $5, true, false)",
            *row[:5],
        )
        await conn.execute("SELECT pg_notify($1, $2)", mail_channel, str(row[1]))


async def discard(pool: asyncpg.Pool, s: str, schema: str, dead_letter: DeadLetter) -> None:
    """Delete a dead letter without delivering its message."""
    async with pool.acquire() as conn:
        await _delete_dead(conn, s, schema, dead_letter, "discard")


async def _delete_dead(conn: Any, s: str, schema: str, dead_letter: DeadLetter, what: str) -> None:
    found = await conn.fetchval(
        f"DELETE FROM {s}.dead_letters WHERE seq = $1 RETURNING seq", dead_letter.seq
    )
    if found is None:
        raise PachytypeError(
            f"cannot {what} dead letter #{dead_letter.seq} for {dead_letter.to!r}: it is "
            f"not among the Postgres dead letters of schema {schema!r} (already "
            f"redelivered or discarded); list them again with `await eco.dead_letters()`"
        )
