"""`pachytype inspect --db PATH MODULE:REGISTRY`: what a LocalDisk database holds.

Entities with their states (decoded and pretty-printed, upgraded to the
code's version in memory only), mailbox depths, delayed messages and dead
letters, as rich tables, or as JSON with `--json`. Read-only: it works while
the owning process runs (WAL readers do not block the writer). With `--dsn`
it shows a PostgreSQL ecosystem's summary (`pachytype._pg_inspect`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.pretty import Pretty
from rich.table import Table

from pachytype._cli_support import load_registry
from pachytype._codec import Codec
from pachytype._durable import decode_dead
from pachytype._registry import Registry
from pachytype._sqlite import connect_readonly, read_dead


def open_db(path: str) -> sqlite3.Connection:
    """A read-only connection, or a click error saying what is wrong."""
    try:
        conn = connect_readonly(Path(path))
        conn.execute("SELECT 1 FROM entities LIMIT 1")
    except (FileNotFoundError, sqlite3.Error) as error:
        raise click.ClickException(
            f"cannot read {path!r} as a LocalDisk database ({error}); pass the file "
            f"LocalDisk(path, REGISTRY) was opened with"
        ) from error
    return conn


def _decode_state(codec: Codec, row: tuple[Any, ...]) -> tuple[object, str | None]:
    etype, eid, data, version = row[0], row[1], row[2], row[3]
    if data is None:
        return None, "no state (init failed or never activated)"
    try:
        id: Hashable = codec.decode_id(etype, eid)
        return codec.decode_state(etype, id, data, version), None
    except Exception as error:
        return bytes(data).decode(errors="replace"), f"{type(error).__name__}: {error}"


def _decode_message(codec: Codec, etype: str, data: bytes) -> object:
    try:
        return codec.decode_message(etype, data)
    except Exception:
        return bytes(data).decode(errors="replace")


def gather(conn: sqlite3.Connection, registry: Registry, limit: int) -> dict[str, Any]:
    """Everything `inspect` shows, as plain data."""
    codec = Codec(registry)
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    depth = dict(
        ((r[0], r[1]), r[2])
        for r in conn.execute(
            "SELECT m.etype, m.eid, count(*) FROM mailbox m LEFT JOIN entities e "
            "USING (etype, eid) WHERE e.consumed IS NULL OR m.id > e.consumed "
            "GROUP BY m.etype, m.eid"
        )
    )
    entities = []
    for row in conn.execute(
        "SELECT etype, eid, state, version, consumed FROM entities ORDER BY etype, eid LIMIT ?",
        (limit,),
    ):
        state, problem = _decode_state(codec, row)
        entities.append(
            {
                "entity_type": row[0],
                "id": row[1],
                "version": row[3],
                "state": state,
                "problem": problem,
                "pending": depth.get((row[0], row[1]), 0),
            }
        )
    now = time.time()
    timers = [
        {
            "id": r[0],
            "entity_type": r[1],
            "to": r[2],
            "message": _decode_message(codec, r[1], r[3]),
            "due_in_s": round(r[4] - now, 3),
        }
        for r in conn.execute("SELECT id, etype, eid, payload, due FROM timers ORDER BY due")
    ]
    dead = []
    for d in read_dead(conn):
        letter = decode_dead(registry, codec, d)
        dead.append(
            {
                "seq": letter.seq,
                "entity_type": d.entity_type,
                "to": d.id_text,
                "message": letter.message,
                "error": f"{letter.error_type}: {letter.error}",
                "state": letter.state,
                "recent": list(letter.recent),
                "at": letter.at.isoformat(),
            }
        )
    (total,) = conn.execute("SELECT count(*) FROM entities").fetchone()
    return {
        "schema": meta.get("schema"),
        "fingerprint": meta.get("fingerprint"),
        "entities_total": total,
        "entities": entities,
        "mailboxes": [
            {"entity_type": k[0], "id": k[1], "pending": n} for k, n in sorted(depth.items())
        ],
        "timers": timers,
        "dead_letters": dead,
    }


def _plain(value: object) -> Any:
    """JSON-ready: attrs instances and other objects become their repr."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def _tables(data: dict[str, Any], path: str) -> list[Table]:
    entities = Table(
        title=f"{path}: entities ({len(data['entities'])} of {data['entities_total']} shown)"
    )
    for column in ("type", "id", "version", "state", "pending"):
        entities.add_column(column)
    for e in data["entities"]:
        state: Any = Pretty(e["state"]) if e["problem"] is None else f"[red]{e['problem']}"
        entities.add_row(e["entity_type"], e["id"], str(e["version"]), state, str(e["pending"]))
    mailboxes = Table(title="mailboxes (messages waiting)")
    for column in ("type", "id", "pending"):
        mailboxes.add_column(column)
    for m in data["mailboxes"]:
        mailboxes.add_row(m["entity_type"], m["id"], str(m["pending"]))
    timers = Table(title="delayed messages")
    for column in ("type", "to", "message", "due in"):
        timers.add_column(column)
    for t in data["timers"]:
        due = "overdue" if t["due_in_s"] <= 0 else f"{t['due_in_s']:.1f}s"
        timers.add_row(t["entity_type"], t["to"], Pretty(t["message"]), due)
    dead = Table(title="dead letters")
    for column in ("#", "type", "to", "message", "error", "recent", "at"):
        dead.add_column(column)
    for d in data["dead_letters"]:
        dead.add_row(
            str(d["seq"]),
            d["entity_type"],
            d["to"],
            Pretty(d["message"]),
            d["error"],
            Pretty(d["recent"]),
            d["at"],
        )
    return [entities, mailboxes, timers, dead]


def _postgres_summary(dsn: str, schema: str) -> dict[str, Any]:
    """`inspect --dsn`: the PostgreSQL ecosystem's summary (pachytype._pg_inspect)."""
    import asyncio

    import attrs

    from pachytype._pg_inspect import inspect_schema

    summary = asyncio.run(inspect_schema(dsn, schema))
    return attrs.asdict(summary)


def _summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"PostgreSQL ecosystem {summary['schema']!r} at {summary['dsn']}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if key != "nodes":
            table.add_row(key.replace("_", " "), str(value))
    for node in summary["nodes"]:
        table.add_row(
            f"node {node['node_id']}",
            f"{node['host']} pid {node['pid']}, {node['partitions']} partitions, "
            f"heartbeat {node['heartbeat_at']}",
        )
    return table


@click.command()
@click.option("--db", "db", metavar="PATH", help="The LocalDisk database file.")
@click.option("--dsn", metavar="DSN", help="A PostgreSQL ecosystem instead (a summary).")
@click.option("--schema", default="pachytype", show_default=True, help="With --dsn.")
@click.argument("target", metavar="MODULE:REGISTRY", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--limit", default=100, show_default=True, help="Entities to list.")
def inspect(
    db: str | None, dsn: str | None, schema: str, target: str | None, as_json: bool, limit: int
) -> None:
    """Show a LocalDisk database: entities and states, mailboxes, delayed
    messages, dead letters (read-only; safe while it runs). With --dsn, a
    summary of a PostgreSQL ecosystem."""
    console = Console()
    if dsn is not None:
        summary = _postgres_summary(dsn, schema)
        if as_json:
            click.echo(orjson.dumps(_plain(summary), option=orjson.OPT_INDENT_2).decode())
        else:
            console.print(_summary_table(summary))
        return
    if db is None or target is None:
        raise click.UsageError(
            "give --db PATH and MODULE:REGISTRY (e.g. pachytype inspect --db bank.db "
            "examples.bank.refs:REGISTRY), or --dsn DSN for a PostgreSQL ecosystem"
        )
    registry = load_registry(target)
    conn = open_db(db)
    try:
        data = gather(conn, registry, limit)
    finally:
        conn.close()
    if as_json:
        click.echo(orjson.dumps(_plain(data), option=orjson.OPT_INDENT_2).decode())
        return
    if data["fingerprint"] not in (None, "", registry.fingerprint):
        console.print(
            f"[yellow]note:[/] the database was last opened with registry fingerprint "
            f"{data['fingerprint'][:12]}, the code's is {registry.fingerprint[:12]}"
        )
    for table in _tables(data, db):
        if table.row_count:
            console.print(table)
        else:
            console.print(f"{table.title}: none")
