"""`pachytype inspect --db PATH MODULE:REGISTRY`: what a LocalDisk database holds.

Entities with their states (decoded and pretty-printed, upgraded to the
code's version in memory only; an event-sourced entity's rebuilt from its
snapshot and events), mailbox depths, delayed messages, dead letters and
the latest events (`--limit` of them, in log order), as rich tables, or as
JSON with `--json`. Read-only: it works while
the owning process runs (WAL readers do not block the writer).

With `--dsn` (or `PACHYTYPE_DSN` in the environment, and no `--db`) it shows
a PostgreSQL schema the same way (events too: the latest `--limit` of each
event-sourced type, whose positions count per type), after a summary of its
nodes and partitions (`pachytype._postgres.inspect` reads it); MODULE:REGISTRY is optional
there (without it states and messages are shown as stored), and every list
is cut at `--limit` rows. Mistakes (no DSN, a bad schema name, an
unreachable server, a schema without tables) are one line naming the DSN
without its password.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Hashable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import click
import orjson
from rich.console import Console
from rich.pretty import Pretty
from rich.table import Table

from pachytype._cli.support import (
    check_schema_name,
    choose_store,
    load_registry,
    postgres_errors,
    store_options,
)
from pachytype._codec import Codec
from pachytype._core.journal import rebuild
from pachytype._core.turn import UNBORN
from pachytype._postgres.dsn import redact
from pachytype._registry import EntityType, Registry
from pachytype._runtime.durable import decode_dead
from pachytype._sqlite.rows import read_dead, read_journals
from pachytype._sqlite.schema import connect_readonly
from pachytype._store import Journal

if TYPE_CHECKING:  # imported when run: it imports asyncpg
    from pachytype._postgres.inspect import SchemaContents


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
    journaled = _has_events(conn)
    entities = []
    for row in conn.execute(
        "SELECT etype, eid, state, version, consumed FROM entities ORDER BY etype, eid LIMIT ?",
        (limit,),
    ):
        etype = registry.types.get(row[0])
        if journaled and etype is not None and etype.event_sourced:
            state, problem = _rebuilt_state(conn, codec, etype, row[1])
        else:
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
    events: list[dict[str, Any]] = []
    events_total = 0
    if journaled:
        (events_total,) = conn.execute("SELECT count(*) FROM events").fetchone()
        rows = conn.execute(
            "SELECT position, etype, eid, seq, payload FROM events ORDER BY position DESC LIMIT ?",
            (limit,),
        ).fetchall()
        for position, etype_name, eid, seq, payload in reversed(rows):
            events.append(
                {
                    "position": position,
                    "entity_type": etype_name,
                    "id": eid,
                    "seq": seq,
                    "event": _decode_event(codec, etype_name, eid, payload),
                }
            )
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
        "events_total": events_total,
        "events": events,
    }


def _has_events(conn: sqlite3.Connection) -> bool:
    """Whether the database has the events tables (a file last opened by an
    older pachytype has not)."""
    found = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'"
    ).fetchone()
    return bool(found[0])


def _rebuilt_state(
    conn: sqlite3.Connection, codec: Codec, etype: EntityType, eid: str
) -> tuple[object, str | None]:
    """An event-sourced entity's state: its snapshot and later events, folded."""
    try:
        journal = read_journals(conn, [(etype.name, eid)]).get((etype.name, eid))
    except Exception as error:
        return None, f"{type(error).__name__}: {error}"
    return _folded(codec, etype, eid, journal)


def _folded(
    codec: Codec, etype: EntityType, eid: str, journal: Journal | None
) -> tuple[object, str | None]:
    """A journal (latest snapshot and the events after it) folded into the state."""
    if journal is None or (journal.snapshot is None and not journal.events):
        return None, "no events (never activated, or no message decided one)"
    try:
        id: Hashable = codec.decode_id(etype.name, eid)
        snapshot = journal.snapshot
        state = (
            UNBORN
            if snapshot is None
            else codec.decode_state(etype.name, id, snapshot[1], snapshot[2])
        )
        decoded = [(n, codec.decode_event(etype.name, id, data)) for n, data in journal.events]
        return rebuild(etype, id, state, decoded), None
    except Exception as error:
        return None, f"{type(error).__name__}: {error}"


def _decode_event(codec: Codec, etype: str, eid: str, data: bytes) -> object:
    try:
        return codec.decode_event(etype, codec.decode_id(etype, eid), data)
    except Exception:
        return bytes(data).decode(errors="replace")


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
    events = Table(
        title=f"events (latest {len(data['events'])} of {data['events_total']}, in log order"
        f"{', per entity type' if 'partitions' in data else ''})"
    )
    for column in ("position", "type", "id", "seq", "event"):
        events.add_column(column)
    for e in data["events"]:
        events.add_row(
            str(e["position"]), e["entity_type"], e["id"], str(e["seq"]), Pretty(e["event"])
        )
    return [entities, mailboxes, timers, dead, events]


def _read_postgres(dsn: str, schema: str, limit: int) -> SchemaContents:
    import asyncio

    from pachytype._postgres.inspect import connect, read_schema, summarize

    async def read() -> SchemaContents:
        conn = await connect(dsn, schema, "inspect")
        try:
            if (await summarize(conn, dsn, schema)).version == 0:
                raise click.ClickException(
                    f"schema {schema!r} at {redact(dsn)} holds no pachytype tables: check "
                    f"--schema (nodes create the tables when they first start, and so does "
                    f"`pachytype migrate --dsn`)"
                )
            return await read_schema(conn, dsn, schema, limit)
        finally:
            await conn.close()

    return asyncio.run(read())


def gather_postgres(contents: SchemaContents, registry: Registry | None) -> dict[str, Any]:
    """Everything `inspect --dsn` shows, as plain data: decoded with `registry`,
    or as stored (text) without one."""
    import attrs

    codec = Codec(registry) if registry is not None else None

    def message(etype: str, data: bytes) -> object:
        if codec is None:
            return bytes(data).decode(errors="replace")
        return _decode_message(codec, etype, data)

    entities = []
    for st in contents.states:
        etype = registry.types.get(st.entity_type) if registry is not None else None
        if st.journal is not None:
            if codec is None or etype is None:
                snap = st.journal.snapshot
                state: object = (
                    f"(event-sourced: "
                    f"{'no snapshot' if snap is None else f'snapshot at event {snap[0]}'}, "
                    f"{len(st.journal.events)} event(s) after it)"
                )
                problem = None
            else:
                state, problem = _folded(codec, etype, st.entity_id, st.journal)
        elif codec is None:
            state = (st.data or b"").decode(errors="replace")
            problem = None
        else:
            state, problem = _decode_state(
                codec, (st.entity_type, st.entity_id, st.data, st.version)
            )
        entities.append(
            {
                "entity_type": st.entity_type,
                "id": st.entity_id,
                "version": st.version,
                "activations": st.activations,
                "state": state,
                "problem": problem,
                "pending": st.pending,
            }
        )
    dead = []
    for d in contents.dead:
        if registry is not None and codec is not None:
            letter = decode_dead(registry, codec, d)
            shown: tuple[object, object, list[object], str] = (
                letter.message,
                letter.state,
                list(letter.recent),
                letter.at.isoformat(),
            )
        else:
            raw_state = None if d.state is None else d.state.decode(errors="replace")
            recent: list[object] = [m.decode(errors="replace") for m in d.recent]
            at = datetime.fromtimestamp(d.at, UTC).isoformat()
            shown = (d.message.decode(errors="replace"), raw_state, recent, at)
        dead.append(
            {
                "seq": d.id,
                "entity_type": d.entity_type,
                "to": d.id_text,
                "message": shown[0],
                "error": f"{d.error_type}: {d.error}",
                "state": shown[1],
                "recent": shown[2],
                "at": shown[3],
            }
        )
    known = set(registry.types) if registry is not None else set()
    summary = attrs.asdict(contents.summary)
    summary["dead_letters_total"] = summary.pop("dead_letters")
    return {
        **summary,
        "fingerprint": contents.fingerprint,
        "entity_types": dict(contents.entity_types),
        "unknown_entity_types": (
            sorted(t for t, _ in contents.entity_types if t not in known)
            if registry is not None
            else []
        ),
        "entities_total": sum(n for _, n in contents.entity_types),
        "entities": entities,
        "mailboxes": [{"entity_type": t, "id": i, "pending": n} for t, i, n in contents.mailboxes],
        "timers": [
            {
                "id": m.seq,
                "entity_type": m.entity_type,
                "to": m.entity_id,
                "message": message(m.entity_type, m.payload),
                "due_in_s": round(m.due_in_s, 3),
            }
            for m in contents.delayed
        ],
        "dead_letters": dead,
        "events_total": contents.events_total,
        "events": [
            {
                "position": e.position,
                "entity_type": e.entity_type,
                "id": e.entity_id,
                "seq": e.seq,
                "event": bytes(e.payload).decode(errors="replace")
                if codec is None
                else _decode_event(codec, e.entity_type, e.entity_id, e.payload),
            }
            for e in contents.events
        ],
    }


SUMMARY_KEYS: Final = (
    "version",
    "partitions",
    "unowned",
    "mail_due",
    "mail_delayed",
    "states",
    "dead_letters_total",
)


def _summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"PostgreSQL ecosystem {summary['schema']!r}")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("dsn", summary["dsn"])
    for key in SUMMARY_KEYS:
        table.add_row(key.replace("_", " "), str(summary[key]))
    for node in summary["nodes"]:
        table.add_row(
            f"{node.get('kind', 'node')} {node['node_id']}",
            f"{node['host']} pid {node['pid']}, {node['partitions']} partitions, "
            f"heartbeat {node['heartbeat_at']}, fingerprint {node['fingerprint'][:12]}",
        )
    return table


def _postgres_notes(
    data: dict[str, Any], registry: Registry | None, target: str | None
) -> list[str]:
    """What the operator should know before trusting the tables."""
    if registry is None:
        return [
            "states and messages are shown as stored (JSON); give MODULE:REGISTRY "
            "(e.g. examples.bank.refs:REGISTRY) to decode them"
        ]
    notes = []
    if data["unknown_entity_types"]:
        listed = ", ".join(
            f"{t!r} ({data['entity_types'][t]})" for t in data["unknown_entity_types"]
        )
        notes.append(
            f"entity types stored here that {target} does not define: {listed}; is it the "
            f"registry the nodes run?"
        )
    theirs = {n["fingerprint"] for n in data["nodes"]} | {data["fingerprint"]}
    theirs -= {None, "", registry.fingerprint}
    if theirs:
        notes.append(
            f"nodes of this schema ran registry fingerprint(s) "
            f"{', '.join(sorted(f[:12] for f in theirs))}; {target}'s is "
            f"{registry.fingerprint[:12]}"
        )
    return notes


def _inspect_postgres(
    dsn: str, schema: str, target: str | None, as_json: bool, limit: int, console: Console
) -> None:
    check_schema_name(schema)
    with postgres_errors(dsn):
        registry = load_registry(target) if target is not None else None
        contents = _read_postgres(dsn, schema, limit)
        data = gather_postgres(contents, registry)
    if as_json:
        click.echo(orjson.dumps(_plain(data), option=orjson.OPT_INDENT_2).decode())
        return
    console.print(_summary_table(data))
    for note in _postgres_notes(data, registry, target):
        console.print(f"[yellow]note:[/] {note}")
    for table in _tables(data, f"schema {schema!r}"):
        if table.row_count:
            console.print(table)
        else:
            console.print(f"{table.title}: none")


@click.command()
@store_options
@click.argument("target", metavar="MODULE:REGISTRY", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--limit", default=100, show_default=True, help="Rows to list per table.")
def inspect(
    db: str | None, dsn: str | None, schema: str, target: str | None, as_json: bool, limit: int
) -> None:
    """Show a LocalDisk database or (with --dsn or PACHYTYPE_DSN) a PostgreSQL
    schema: entities and states, mailboxes, delayed messages, dead letters
    (read-only; safe while it runs)."""
    console = Console()
    if choose_store(db, dsn, "inspect") == "dsn":
        assert dsn is not None
        _inspect_postgres(dsn, schema, target, as_json, limit, console)
        return
    assert db is not None
    if target is None:
        raise click.UsageError(
            "give --db PATH and MODULE:REGISTRY (e.g. pachytype inspect --db bank.db "
            "examples.bank.refs:REGISTRY)"
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
