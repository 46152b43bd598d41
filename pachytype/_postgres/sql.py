"""SQL text of a `PostgresStore` (`pachytype._postgres.store`) that is built
from pieces: the fenced commit statement (`commit.py` supplies its
parameters), and the columns claims and recovery pages read (`claims.py`).
Pure: each function returns text for one schema.

Design note (the commit statement)
----------------------------------
* **One statement per shape.** A commit writes what its batch holds, and
  most batches hold a few kinds of rows (a call: a deletion, a state, an
  answer, a notification). The statement is built for the batch's *shape*
  (which parts are non-empty: a bit each, `PARTS`) with only those parts'
  CTEs and parameters, so the server neither starts nor runs a part with
  nothing to do (an empty part still cost: its plan nodes started, and in
  generic plans `tk` and `fi` scanned the whole mailbox), and the node
  sends only what is used. The text is cached per
  (schema, shape): asyncpg keeps one prepared statement (and the server one
  generic plan) per text, and batches come in a handful of shapes.
* **The fence is in every shape.** The lease rows are locked and checked
  (`l`, `l0`, `mv`, `g`) whatever the batch holds, and every write is
  conditional on `g`; the watches check (`w`) and the fired timers check
  (`fi`) are in the fence when the batch has entities or fired timers (an
  absent one passes, as it would with nothing to check).
* **Parameters.** `$1` to `$3` are the fence's (the owned partitions the
  batch touches, their epochs, the node id: `commit._fenced`); then each
  part present, in `PARTS` order, takes its columns (`PARTS` gives how
  many). The result row is the same in every shape: go, newly watched
  types, fired timers all there, newly watched ids, notifications sent,
  lease rows moved.
"""

from __future__ import annotations

import functools
from typing import Final

from pachytype._postgres.schema import dropped_answers

WATCHED: Final = 1 << 0
"""Entities of the batch not known to be followed (`w`): type, id."""
FIRED: Final = 1 << 1
"""Timers that fell due here, which must still be there (`fi`): partition, seq."""
DELETED: Final = 1 << 2
"""Consumed mail and timers (`d`): partition, seq."""
STATES: Final = 1 << 3
"""States (`st`): type, id, partition, version, data, activations, recent;
and the inbox's entity type (kept only while followed)."""
HISTORY: Final = 1 << 4
"""States of followed entities (`h`, needs `STATES`): type, id, k, n, version, data."""
MAIL: Final = 1 << 5
"""New mail and timers (`m`): seq, partition, type, id, payload, due, timer key;
and the nil message id."""
REPLACED: Final = 1 << 6
"""Keyed timers replaced elsewhere (`tk`, `tkd`): type, id, key; and now."""
ANSWERS: Final = 1 << 7
"""Consumed calls' answers (`x`): msg id, version, data, error type, error."""
DEDUPE: Final = 1 << 8
"""Consumed outside messages without an answer (`x`): msg id."""
UNATTEMPT: Final = 1 << 9
"""Attempt counts to drop (`a`): seq."""
ATTEMPTED: Final = 1 << 10
"""Attempt counts to raise (`b`): seq."""
SNAPSHOTS: Final = 1 << 11
"""Snapshots (`sn`): type, id, seq, state, version."""
REDELIVERED: Final = 1 << 12
"""Dead letters sent again (`r`): seq."""
FORGOTTEN: Final = 1 << 13
"""States forgotten (`fo`): type, id."""
NOTICES: Final = 1 << 14
"""Notifications: channel, payload."""

PARTS: Final = (
    (WATCHED, 2),
    (FIRED, 2),
    (DELETED, 2),
    (STATES, 8),
    (HISTORY, 6),
    (MAIL, 8),
    (REPLACED, 4),
    (ANSWERS, 5),
    (DEDUPE, 1),
    (UNATTEMPT, 1),
    (ATTEMPTED, 1),
    (SNAPSHOTS, 5),
    (REDELIVERED, 1),
    (FORGOTTEN, 2),
    (NOTICES, 2),
)
"""The parts of a commit, in parameter order, with how many parameters each takes."""

ALL: Final = sum(bit for bit, _ in PARTS)
"""The shape with every part."""


def consumed_before(s: str) -> str:
    """A column: whether the row is an outside message consumed before (a
    resend). A scalar subquery, one index probe per row: as an `EXISTS` the
    planner may hash the whole `dedupe` table (every answered call) per claim."""
    return f"m.outside AND (SELECT true FROM {s}.dedupe d WHERE d.msg_id = m.msg_id) IS NOT NULL"


def followed_now(s: str) -> str:
    """A column: whether the row's entity is followed (an InitPlan first:
    most of the time nobody follows anything)."""
    return (
        f"(SELECT EXISTS (SELECT 1 FROM {s}.watches)) AND (SELECT true FROM "
        f"{s}.watches w WHERE w.entity_type = m.entity_type AND w.entity_id = m.entity_id "
        f"LIMIT 1) IS NOT NULL"
    )


@functools.cache
def commit_statement(s: str, shape: int) -> str:
    """The commit (in schema `s`) of a batch of `shape` (the `PARTS` it has):
    one statement, every write conditional on the fence. Its parameters are
    the fence's (`$1` to `$3`), then those of each part of `shape` in `PARTS`
    order (`Commits._commit` builds them)."""
    if shape & ~ALL:
        raise ValueError(f"unknown parts in commit shape {shape:#x}")
    if shape & HISTORY and not shape & STATES:
        raise ValueError("a commit shape with history has states (history rows join them)")
    taken: dict[int, list[str]] = {}
    n = 4
    for bit, width in PARTS:
        if shape & bit:
            taken[bit] = [f"${i}" for i in range(n, n + width)]
            n += width
    go = "(SELECT go FROM g)"
    # `l`: the lease rows locked, as they are now (a row changed since the
    # statement's snapshot is read again under the lock); `l0`: as the
    # snapshot saw them. A row that changed (`mv`) may hide a follower
    # registered meanwhile from `w`: the statement is refused and sent again
    # (with a newer snapshot).
    ctes = [
        f"l AS (SELECT partition, owner, epoch, xmin::text AS v FROM {s}.leases "
        f"WHERE partition = ANY($1::int[]) FOR KEY SHARE)",
        f"l0 AS (SELECT partition, xmin::text AS v FROM {s}.leases "
        f"WHERE partition = ANY($1::int[]))",
        "mv AS (SELECT EXISTS (SELECT 1 FROM l JOIN l0 ON l0.partition = l.partition "
        "WHERE l.v <> l0.v) AS moved)",
    ]
    checks = ["coalesce(bool_and(coalesce(l.owner = $3 AND l.epoch = u.e, false)), true)"]
    watched_t = watched_e = "NULL::text[]"
    fired_ok = "true"
    if shape & WATCHED:
        t, e = taken[WATCHED]
        ctes.append(
            f"w AS (SELECT DISTINCT w.entity_type, w.entity_id FROM {s}.watches w "
            f"JOIN unnest({t}::text[], {e}::text[]) AS k(t, e) "
            f"ON w.entity_type = k.t AND w.entity_id = k.e)"
        )
        checks.append("NOT EXISTS (SELECT 1 FROM w)")
        watched_t = "(SELECT array_agg(entity_type) FROM w)"
        watched_e = "(SELECT array_agg(entity_id) FROM w)"
    if shape & FIRED:
        p, q = taken[FIRED]
        ctes.append(
            f"fi AS (SELECT count(*) = cardinality({q}::bigint[]) AS ok FROM {s}.mailbox m "
            f"JOIN unnest({p}::int[], {q}::bigint[]) AS u(p, q) ON m.partition = u.p "
            f"AND m.seq = u.q)"
        )
        checks.append("(SELECT ok FROM fi)")
        fired_ok = "(SELECT ok FROM fi)"
    checks.append("NOT (SELECT moved FROM mv)")
    ctes.append(
        f"g AS (SELECT {' AND '.join(checks)} AS go "
        f"FROM unnest($1::int[], $2::bigint[]) AS u(p, e) LEFT JOIN l ON l.partition = u.p)"
    )
    if shape & DELETED:
        p, q = taken[DELETED]
        ctes.append(
            f"d AS (DELETE FROM {s}.mailbox m USING unnest({p}::int[], {q}::bigint[]) AS u(p, q) "
            f"WHERE m.partition = u.p AND m.seq = u.q AND {go})"
        )
    if shape & STATES:
        t, e, p, v, data, a, r, inbox = taken[STATES]
        ctes.append(
            f"st AS (INSERT INTO {s}.states "
            f"(entity_type, entity_id, partition, version, data, activations, recent) "
            f"SELECT * FROM unnest({t}::text[], {e}::text[], {p}::int[], {v}::int[], "
            f"{data}::bytea[], {a}::bigint[], {r}::bytea[]) AS u(t, e, p, v, d, a, r) "
            f"WHERE {go} "
            # An ask's inbox is kept only while followed (`pachytype._inbox`), now.
            f"AND (u.t <> {inbox} OR EXISTS (SELECT 1 FROM {s}.watches w "
            f"WHERE w.entity_type = u.t AND w.entity_id = u.e)) "
            f"ON CONFLICT (entity_type, entity_id) DO UPDATE SET "
            f"version = CASE WHEN excluded.data IS NULL THEN {s}.states.version "
            f"ELSE excluded.version END, data = coalesce(excluded.data, {s}.states.data), "
            f"activations = {s}.states.activations + excluded.activations, "
            f"recent = coalesce(excluded.recent, {s}.states.recent) "
            f"RETURNING entity_type, entity_id, activations)"
        )
    if shape & HISTORY:
        t, e, k, hn, v, data = taken[HISTORY]
        ctes.append(
            f"h AS (INSERT INTO {s}.history (entity_type, entity_id, activations, version, data) "
            f"SELECT u.t, u.e, st.activations - u.n + u.k, u.v, u.d "
            f"FROM unnest({t}::text[], {e}::text[], {k}::bigint[], {hn}::bigint[], {v}::int[], "
            f"{data}::bytea[]) AS u(t, e, k, n, v, d) "
            f"JOIN st ON st.entity_type = u.t AND st.entity_id = u.e ON CONFLICT DO NOTHING)"
        )
    if shape & MAIL:
        q, p, t, e, b, due, key, nil = taken[MAIL]
        ctes.append(
            f"m AS (INSERT INTO {s}.mailbox (seq, partition, entity_type, entity_id, payload, "
            f"due, timer_key, msg_id) SELECT u.q, u.p, u.t, u.e, u.b, u.d, u.k, {nil}::uuid "
            f"FROM unnest({q}::bigint[], {p}::int[], {t}::text[], {e}::text[], {b}::bytea[], "
            f"{due}::float8[], {key}::text[]) AS u(q, p, t, e, b, d, k) WHERE {go})"
        )
    if shape & REPLACED:
        t, e, k, now = taken[REPLACED]
        ctes.append(
            f"tk AS (DELETE FROM {s}.mailbox x USING (SELECT DISTINCT * FROM "
            f"unnest({t}::text[], {e}::text[], {k}::text[]) AS v(t, e, k)) AS v "
            f"WHERE x.entity_type = v.t AND x.entity_id = v.e AND x.timer_key = v.k "
            f"AND x.due > {now}::float8 AND {go} RETURNING x.msg_id, x.reply)"
        )
        ctes.append(dropped_answers(s))
    if shape & (ANSWERS | DEDUPE):
        rows = []
        if shape & ANSWERS:
            i, v, data, et, err = taken[ANSWERS]
            rows.append(
                f"SELECT * FROM unnest({i}::uuid[], {v}::int[], {data}::bytea[], {et}::text[], "
                f"{err}::text[]) WHERE {go}"
            )
        if shape & DEDUPE:
            (i,) = taken[DEDUPE]
            rows.append(f"SELECT unnest({i}::uuid[]), NULL, NULL, NULL, NULL WHERE {go}")
        ctes.append(
            f"x AS (INSERT INTO {s}.dedupe (msg_id, version, data, error_type, error) "
            f"{' UNION ALL '.join(rows)})"
        )
    if shape & UNATTEMPT:
        (q,) = taken[UNATTEMPT]
        ctes.append(f"a AS (DELETE FROM {s}.attempts WHERE seq = ANY({q}::bigint[]) AND {go})")
    if shape & ATTEMPTED:
        (q,) = taken[ATTEMPTED]
        ctes.append(
            f"b AS (INSERT INTO {s}.attempts (seq, n) SELECT unnest({q}::bigint[]), 1 "
            f"WHERE {go} ON CONFLICT (seq) DO UPDATE SET n = {s}.attempts.n + 1)"
        )
    if shape & SNAPSHOTS:
        t, e, q, state, v = taken[SNAPSHOTS]
        ctes.append(
            f"sn AS (INSERT INTO {s}.snapshots (entity_type, entity_id, seq, state, version) "
            f"SELECT * FROM unnest({t}::text[], {e}::text[], {q}::bigint[], {state}::bytea[], "
            f"{v}::int[]) WHERE {go} ON CONFLICT (entity_type, entity_id) DO UPDATE SET "
            f"seq = excluded.seq, state = excluded.state, version = excluded.version)"
        )
    if shape & REDELIVERED:
        (q,) = taken[REDELIVERED]
        ctes.append(f"r AS (DELETE FROM {s}.dead_letters WHERE seq = ANY({q}::bigint[]) AND {go})")
    if shape & FORGOTTEN:
        t, e = taken[FORGOTTEN]
        ctes.append(
            f"fo AS (DELETE FROM {s}.states t USING unnest({t}::text[], {e}::text[]) AS u(t, e) "
            f"WHERE t.entity_type = u.t AND t.entity_id = u.e AND {go})"
        )
    notified = "0::bigint"
    if shape & NOTICES:
        c, payload = taken[NOTICES]
        notified = (
            f"(SELECT count(pg_notify(c, n)) FROM unnest({c}::text[], {payload}::text[]) "
            f"AS u(c, n) WHERE {go})"
        )
    return (
        f"WITH {', '.join(ctes)} SELECT {go}, {watched_t}, {fired_ok}, {watched_e}, "
        f"{notified}, (SELECT moved FROM mv)"
    )
