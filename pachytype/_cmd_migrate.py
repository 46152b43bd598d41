"""`pachytype migrate --db PATH MODULE:REGISTRY`: upgrade every stored state of
a LocalDisk database to the code's `state_version`.

Design note. States are upgraded lazily on load anyway; `migrate` does it
ahead of time, e.g. before removing an old `@upgrade`. It walks the states
below the current version in key order, in batches; each batch is one
transaction that rewrites a state only if its version is still the one read
(so a batch is all or nothing, and stopping at any moment — Ctrl-C, a kill
— loses nothing: running it again continues with what is left). It holds
the database's single-writer lock, so it refuses to run beside a live
LocalDisk. A state that cannot be upgraded is left exactly as stored,
reported, and makes the command exit 1.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import click
from attrs import define, field
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pachytype._codec import Codec
from pachytype._registry import Registry
from pachytype._sqlite import FileLock, StoreLockedError, connect, transaction


@define
class Outcome:
    """What a migration did."""

    upgraded: int = 0
    failed: list[str] = field(factory=list)


def pending_count(conn: sqlite3.Connection, registry: Registry) -> int:
    """How many stored states are below their entity's current version."""
    total = 0
    for etype in registry:
        (n,) = conn.execute(
            "SELECT count(*) FROM entities WHERE etype = ? AND version < ? AND state IS NOT NULL",
            (etype.name, etype.state_version),
        ).fetchone()
        total += n
    return total


def migrate_batch(
    conn: sqlite3.Connection,
    codec: Codec,
    entity_type: str,
    current: int,
    after: str,
    size: int,
    outcome: Outcome,
) -> str | None:
    """Upgrade up to `size` states of `entity_type` with ids after `after`, in
    one transaction; returns the last id looked at (None when done)."""
    rows = conn.execute(
        "SELECT eid, state, version FROM entities WHERE etype = ? AND eid > ? "
        "AND version < ? AND state IS NOT NULL ORDER BY eid LIMIT ?",
        (entity_type, after, current, size),
    ).fetchall()
    if not rows:
        return None
    updates = []
    for eid, data, version in rows:
        try:
            state = codec.decode_state(
                entity_type, codec.decode_id(entity_type, eid), data, version
            )
            updates.append(
                (codec.encode_state(entity_type, state), current, entity_type, eid, version)
            )
        except Exception as error:
            outcome.failed.append(f"{entity_type} {eid!r}: {error}")
    with transaction(conn):
        conn.executemany(
            "UPDATE entities SET state = ?, version = ? "
            "WHERE etype = ? AND eid = ? AND version = ?",
            updates,
        )
    outcome.upgraded += len(updates)
    last: str = rows[-1][0]
    return last


def migrate_all(
    path: Path, registry: Registry, size: int, progress: Progress | None = None
) -> Outcome:
    """Upgrade every state of the database at `path` (holding its lock)."""
    lock = FileLock(path)
    lock.acquire()
    try:
        conn = connect(path)
        try:
            codec = Codec(registry)
            outcome = Outcome()
            task = None
            if progress is not None:
                task = progress.add_task("upgrading states", total=pending_count(conn, registry))
            for etype in registry:
                after: str | None = ""
                while after is not None:
                    before = outcome.upgraded + len(outcome.failed)
                    after = migrate_batch(
                        conn, codec, etype.name, etype.state_version, after, size, outcome
                    )
                    if progress is not None and task is not None:
                        progress.advance(task, outcome.upgraded + len(outcome.failed) - before)
            return outcome
        finally:
            conn.close()
    finally:
        lock.release()


@click.command()
@click.option("--db", "db", metavar="PATH", help="The LocalDisk database file.")
@click.option("--dsn", metavar="DSN", help="A PostgreSQL ecosystem instead: its tables.")
@click.option("--schema", default="pachytype", show_default=True, help="With --dsn.")
@click.argument("target", metavar="MODULE:REGISTRY", required=False)
@click.option("--batch", default=500, show_default=True, help="States per transaction.")
def migrate(db: str | None, dsn: str | None, schema: str, target: str | None, batch: int) -> None:
    """Upgrade every stored state of a LocalDisk database to the code's
    state_version, in batches (safe to interrupt: run it again to continue).
    With --dsn, bring a PostgreSQL ecosystem's tables to this version."""
    console = Console()
    if dsn is not None:
        import asyncio

        from pachytype._pg_inspect import migrate_schema

        found, now = asyncio.run(migrate_schema(dsn, schema))
        console.print(f"schema {schema!r}: tables at version {found}, now {now}")
        return
    if db is None or target is None:
        raise click.UsageError(
            "give --db PATH and MODULE:REGISTRY (e.g. pachytype migrate --db bank.db "
            "examples.bank.refs:REGISTRY), or --dsn DSN for a PostgreSQL ecosystem"
        )
    from pachytype._cli_support import load_registry
    from pachytype._cmd_inspect import open_db

    registry = load_registry(target)
    open_db(db).close()  # a clear error if it is not a LocalDisk database
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console) as progress:
            outcome = migrate_all(Path(db), registry, batch, progress)
    except StoreLockedError as error:
        raise click.ClickException(str(error)) from error
    console.print(f"upgraded {outcome.upgraded} state(s) to the current version")
    if outcome.failed:
        for problem in outcome.failed:
            console.print(f"[red]not upgraded[/] {problem}")
        raise SystemExit(1)
