"""SQL text of a `PostgresStore` (`pachytype._postgres.store`) that is built
from pieces: the fenced commit statement (`commit.py` supplies its
parameters, `$1` to `$53`), and the columns claims and recovery pages read
(`claims.py`). Pure: each function returns text for one schema."""

from __future__ import annotations

from pachytype._postgres.schema import dropped_answers


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


def commit_statement(s: str) -> str:
    """The commit (in schema `s`): one statement, every write conditional on
    the fence. Its parameters, in order, are those `Commits._commit` builds."""
    go = "(SELECT go FROM g)"
    return (
        # `l`: the lease rows locked, as they are now (a row changed since
        # the statement's snapshot is read again under the lock); `l0`: as
        # the snapshot saw them. A row that changed (`mv`) may hide a
        # follower registered meanwhile from `w`: the statement is refused
        # and sent again (with a newer snapshot).
        f"WITH l AS (SELECT partition, owner, epoch, xmin::text AS v FROM {s}.leases "
        f"WHERE partition = ANY($1::int[]) FOR KEY SHARE), "
        f"l0 AS (SELECT partition, xmin::text AS v FROM {s}.leases "
        f"WHERE partition = ANY($1::int[])), "
        f"mv AS (SELECT EXISTS (SELECT 1 FROM l JOIN l0 ON l0.partition = l.partition "
        f"WHERE l.v <> l0.v) AS moved), "
        f"w AS (SELECT DISTINCT w.entity_type, w.entity_id FROM {s}.watches w "
        f"JOIN unnest($4::text[], $5::text[]) AS k(t, e) "
        f"ON w.entity_type = k.t AND w.entity_id = k.e), "
        f"fi AS (SELECT count(*) = cardinality($49::bigint[]) AS ok FROM {s}.mailbox m "
        f"JOIN unnest($48::int[], $49::bigint[]) AS u(p, q) ON m.partition = u.p "
        f"AND m.seq = u.q), "
        f"g AS (SELECT coalesce(bool_and(coalesce(l.owner = $3 AND l.epoch = u.e, false)), "
        f"true) AND NOT EXISTS (SELECT 1 FROM w) AND (SELECT ok FROM fi) "
        f"AND NOT (SELECT moved FROM mv) AS go "
        f"FROM unnest($1::int[], $2::bigint[]) AS u(p, e) LEFT JOIN l ON l.partition = u.p), "
        f"d AS (DELETE FROM {s}.mailbox m USING unnest($6::int[], $7::bigint[]) AS u(p, q) "
        f"WHERE m.partition = u.p AND m.seq = u.q AND {go}), "
        f"st AS (INSERT INTO {s}.states "
        f"(entity_type, entity_id, partition, version, data, activations, recent) "
        f"SELECT * FROM unnest($8::text[], $9::text[], $10::int[], $11::int[], "
        f"$12::bytea[], $13::bigint[], $14::bytea[]) AS u(t, e, p, v, d, a, r) WHERE {go} "
        # An ask's inbox is kept only while followed (`pachytype._inbox`), now.
        f"AND (u.t <> $53 OR EXISTS (SELECT 1 FROM {s}.watches w "
        f"WHERE w.entity_type = u.t AND w.entity_id = u.e)) "
        f"ON CONFLICT (entity_type, entity_id) DO UPDATE SET "
        f"version = CASE WHEN excluded.data IS NULL THEN {s}.states.version "
        f"ELSE excluded.version END, data = coalesce(excluded.data, {s}.states.data), "
        f"activations = {s}.states.activations + excluded.activations, "
        f"recent = coalesce(excluded.recent, {s}.states.recent) "
        f"RETURNING entity_type, entity_id, activations), "
        f"h AS (INSERT INTO {s}.history (entity_type, entity_id, activations, version, data) "
        f"SELECT u.t, u.e, st.activations - u.n + u.k, u.v, u.d "
        f"FROM unnest($15::text[], $16::text[], $17::bigint[], $18::bigint[], $19::int[], "
        f"$20::bytea[]) AS u(t, e, k, n, v, d) "
        f"JOIN st ON st.entity_type = u.t AND st.entity_id = u.e ON CONFLICT DO NOTHING), "
        f"m AS (INSERT INTO {s}.mailbox (seq, partition, entity_type, entity_id, payload, "
        f"due, timer_key, msg_id) SELECT u.q, u.p, u.t, u.e, u.b, u.d, u.k, $27::uuid "
        f"FROM unnest($21::bigint[], $22::int[], $23::text[], $24::text[], $25::bytea[], "
        f"$26::float8[], $44::text[]) AS u(q, p, t, e, b, d, k) WHERE {go}), "
        f"tk AS (DELETE FROM {s}.mailbox x USING (SELECT DISTINCT * FROM "
        f"unnest($45::text[], $46::text[], $47::text[]) AS v(t, e, k)) AS v "
        f"WHERE x.entity_type = v.t AND x.entity_id = v.e AND x.timer_key = v.k "
        f"AND x.due > $50::float8 AND {go} RETURNING x.msg_id, x.reply), {dropped_answers(s)}, "
        f"x AS (INSERT INTO {s}.dedupe (msg_id, version, data, error_type, error) "
        f"SELECT * FROM unnest($29::uuid[], $30::int[], $31::bytea[], $32::text[], "
        f"$33::text[]) WHERE {go} UNION ALL "
        f"SELECT unnest($28::uuid[]), NULL, NULL, NULL, NULL WHERE {go}), "
        f"a AS (DELETE FROM {s}.attempts WHERE seq = ANY($34::bigint[]) AND {go}), "
        f"b AS (INSERT INTO {s}.attempts (seq, n) SELECT unnest($35::bigint[]), 1 WHERE {go} "
        f"ON CONFLICT (seq) DO UPDATE SET n = {s}.attempts.n + 1), "
        f"sn AS (INSERT INTO {s}.snapshots (entity_type, entity_id, seq, state, version) "
        f"SELECT * FROM unnest($38::text[], $39::text[], $40::bigint[], $41::bytea[], "
        f"$42::int[]) WHERE {go} ON CONFLICT (entity_type, entity_id) DO UPDATE SET "
        f"seq = excluded.seq, state = excluded.state, version = excluded.version), "
        f"r AS (DELETE FROM {s}.dead_letters WHERE seq = ANY($43::bigint[]) AND {go}), "
        f"fo AS (DELETE FROM {s}.states t USING unnest($51::text[], $52::text[]) AS u(t, e) "
        f"WHERE t.entity_type = u.t AND t.entity_id = u.e AND {go}) "
        f"SELECT {go}, (SELECT array_agg(entity_type) FROM w), "
        f"(SELECT ok FROM fi), "
        f"(SELECT array_agg(entity_id) FROM w), "
        f"(SELECT count(pg_notify(c, n)) FROM unnest($36::text[], $37::text[]) AS u(c, n) "
        f"WHERE {go}), (SELECT moved FROM mv)"
    )
