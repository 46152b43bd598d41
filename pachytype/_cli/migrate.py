"""`pachytype migrate --db PATH MODULE:REGISTRY`: upgrade every stored state of
a LocalDisk database to the code's `state_version`; `pachytype migrate --dsn
DSN [MODULE:REGISTRY]` (or `PACHYTYPE_DSN`) does the same for a PostgreSQL
schema, after bringing its tables to this version.

Design note. States are upgraded lazily on load anyway; `migrate` does it
ahead of time, e.g. before removing an old `@upgrade`. It walks the states
below the current version in key order, in batches; each batch is one
transaction that rewrites a state only if its version is still the one read
(so a batch is all or nothing, and stopping at any moment — Ctrl-C, a kill
— loses nothing: running it again continues with what is left). It holds
the database's single-writer lock, so it refuses to run beside a live
LocalDisk. A state that cannot be upgraded is left exactly as stored,
reported, and makes the command exit 1.

On PostgreSQL the same holds per batch (one statement each), but live
nodes may run beside it: a row is rewritten only if its version and
activation count are still the ones read (a node that committed the entity
meanwhile wrote the current version itself). It refuses to run while live
nodes run another registry (they could not read the upgraded states), and
when the registry defines none of the stored entity types (a wrong
registry or schema); states of types it does not define are left alone
and counted.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import click
from attrs import define, field
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pachytype._cli.support import (
    check_schema_name,
    choose_store,
    load_registry,
    postgres_errors,
    store_options,
)
from pachytype._codec import Codec
from pachytype._errors import StoreLockedError
from pachytype._postgres.dsn import redact
from pachytype._registry import Registry
from pachytype._sqlite.lock import FileLock
from pachytype._sqlite.schema import connect, transaction


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


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _migrate_postgres(
    dsn: str, schema: str, target: str | None, batch: int, console: Console
) -> None:
    """`migrate --dsn`: the tables to this version, then (with a registry) every
    stored state to the code's `state_version` (`pachytype._postgres.inspect`)."""
    import asyncio

    from pachytype._postgres.inspect import (
        StateMigration,
        connect,
        foreign_nodes,
        migrate_states,
        migrate_tables,
        pending_states,
        stored_types,
    )
    from pachytype._postgres.schema import VERSION

    check_schema_name(schema)
    registry = load_registry(target) if target is not None else None

    async def run() -> tuple[int, StateMigration | None, dict[str, int]]:
        conn = await connect(dsn, schema, "migrate")
        try:
            found = await migrate_tables(conn, schema)
            if found == 0:
                console.print(
                    f"schema {schema!r} did not exist at {redact(dsn)}: created its tables"
                )
            console.print(f"schema {schema!r}: tables at version {found}, now {VERSION}")
            if registry is None:
                return found, None, {}
            types = await stored_types(conn, schema)
            unknown = {t: n for t, n in types.items() if t not in registry.types}
            if types and len(unknown) == len(types):
                raise click.ClickException(
                    f"{target} defines none of the entity types stored in schema {schema!r} "
                    f"({', '.join(sorted(types))}): wrong registry, or wrong --schema?"
                )
            others = await foreign_nodes(conn, schema, registry.fingerprint)
            if others:
                listed = ", ".join(f"{n} ({f[:12]})" for n, f in others)
                raise click.ClickException(
                    f"live nodes of schema {schema!r} run another registry than {target} "
                    f"(fingerprint {registry.fingerprint[:12]}): {listed}; stop them first "
                    f"(they cannot read upgraded states), or migrate with the registry they run"
                )
            with _progress(console) as progress:
                task = progress.add_task(
                    "upgrading states", total=await pending_states(conn, schema, registry)
                )
                outcome = await migrate_states(
                    conn, schema, registry, batch, lambda n: progress.advance(task, n)
                )
                # Live nodes upgrade states too: the count made first may be high.
                progress.update(task, total=progress.tasks[0].completed)
            return found, outcome, unknown
        finally:
            await conn.close()

    with postgres_errors(dsn):
        _found, outcome, unknown = asyncio.run(run())
    if outcome is None:
        console.print(
            "stored states were not touched: give MODULE:REGISTRY to upgrade them to the "
            "code's state_version"
        )
        return
    console.print(f"upgraded {outcome.upgraded} state(s) to the current version")
    if outcome.overtaken:
        console.print(
            f"{outcome.overtaken} state(s) were committed by a live node meanwhile "
            f"(it wrote the current version)"
        )
    for etype, n in sorted(unknown.items()):
        console.print(
            f"[yellow]note:[/] {n} state(s) of entity type {etype!r}, which {target} does "
            f"not define, were left as stored"
        )
    if outcome.failed:
        for problem in outcome.failed:
            console.print(f"[red]not upgraded[/] {problem}")
        raise SystemExit(1)


@click.command()
@store_options
@click.argument("target", metavar="MODULE:REGISTRY", required=False)
@click.option("--batch", default=500, show_default=True, help="States per transaction.")
def migrate(db: str | None, dsn: str | None, schema: str, target: str | None, batch: int) -> None:
    """Upgrade every stored state of a LocalDisk database, or (with --dsn or
    PACHYTYPE_DSN) of a PostgreSQL schema, to the code's state_version, in
    batches (safe to interrupt: run it again to continue). With --dsn it
    first brings the schema's tables to this version (creating them if
    missing); without MODULE:REGISTRY it does only that."""
    console = Console()
    if choose_store(db, dsn, "migrate") == "dsn":
        assert dsn is not None
        _migrate_postgres(dsn, schema, target, batch, console)
        return
    assert db is not None
    if target is None:
        raise click.UsageError(
            "give --db PATH and MODULE:REGISTRY (e.g. pachytype migrate --db bank.db "
            "examples.bank.refs:REGISTRY)"
        )
    from pachytype._cli.inspect import open_db

    registry = load_registry(target)
    open_db(db).close()  # a clear error if it is not a LocalDisk database
    try:
        with _progress(console) as progress:
            outcome = migrate_all(Path(db), registry, batch, progress)
    except StoreLockedError as error:
        raise click.ClickException(str(error)) from error
    console.print(f"upgraded {outcome.upgraded} state(s) to the current version")
    if outcome.failed:
        for problem in outcome.failed:
            console.print(f"[red]not upgraded[/] {problem}")
        raise SystemExit(1)
