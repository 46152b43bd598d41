"""Membership and partition leases: which node owns which partition, now.

Design note
-----------
* **A lease row per partition** holds `(owner, epoch, expires_at)`. Every
  time a partition changes owner its epoch grows. All times are the
  database's `now()`, so node clocks never matter.
* **Heartbeat** (every `lease / 4`): refresh this node's `nodes` row, list
  the live nodes (heartbeat within one lease), compute the balanced
  assignment (`_postgres.partition.assign`), renew the leases this node holds,
  release the ones it should no longer hold, and take the ones it should
  hold that are free or expired.
* **Fencing is in the locks, not in the clock.** An activation batch locks
  the lease rows of its partitions `FOR KEY SHARE` and checks owner and
  epoch in the same transaction as its writes. Taking or releasing a
  partition locks the row `FOR UPDATE` (which conflicts with KEY SHARE), so
  it waits for any batch still committing under the old epoch; a takeover
  uses `SKIP LOCKED` and retries at the next heartbeat rather than waiting.
  Renewing a lease only updates `expires_at` (a non-key column), so it never
  blocks a batch. A node paused in the middle of a batch has its
  transaction ended by the server (`idle_in_transaction_session_timeout`,
  half a lease) before its lease can expire; when it resumes, its next
  batch sees another owner and commits nothing.
* **Joining** is refused when a live member (node or client) runs a
  registry this one cannot run beside (`_postgres/deploy.py`: a rolling deploy of
  compatible changes and upgraded states is fine); the check and the
  insertion of the member's row happen under one advisory lock so two
  conflicting versions cannot slip in together. A migration by a newer
  pachytype holds that lock too: a join, and every heartbeat, first checks
  that the schema is not newer than this library (`_postgres/schema.py`);
  a heartbeat that finds it newer raises instead of renewing, and the node
  hands its partitions over and stops serving.
* **Rolling deploys.** The assignment gives a partition only to nodes that
  read every state stored in it (`_postgres.deploy.Deployment.eligible_node`, from
  the lease row's `writers`); taking or renewing a lease adds this node's
  registry to its writers, and a take re-checks eligibility under the row's
  lock.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
import zlib
from collections.abc import Awaitable, Callable
from typing import Final

import asyncpg  # type: ignore[import-untyped]  # no stubs published
from attrs import define, field

from pachytype._errors import FingerprintMismatchError
from pachytype._inbox import INBOX
from pachytype._postgres.deploy import Deployment, member_row
from pachytype._postgres.partition import assign
from pachytype._postgres.schema import check_not_newer, join_lock_key, quote_schema

log = logging.getLogger("pachytype.postgres")

__all__ = ["FingerprintMismatchError", "Membership", "Ownership", "channel", "new_node_id"]


def new_node_id() -> str:
    """A node id readable in `pachytype inspect`: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def channel(schema: str, kind: str) -> str:
    """The LISTEN/NOTIFY channel of `kind` ('mail', 'reply', 'state', 'members')."""
    return f"pachytype_{zlib.crc32(schema.encode()):08x}_{kind}"


@define
class Ownership:
    """The partitions this node owns now, `partition -> epoch`; workers read it
    before each batch, the heartbeat changes it."""

    epochs: dict[int, int] = field(factory=dict)
    changed: asyncio.Event = field(factory=asyncio.Event)
    expired: set[int] = field(factory=set)
    """Partitions taken from an owner whose lease expired (it died, or hung):
    their mail may have been running when it stopped (suspects)."""

    def drop(self, partitions: list[int]) -> None:
        """Stop treating `partitions` as owned (lost or released)."""
        for p in partitions:
            self.epochs.pop(p, None)
        if partitions:
            self.changed.set()


DEDUPE_RETENTION: Final = 3600.0
"""Seconds a consumed outside message id is remembered (resends come within seconds)."""

REPLY_RETENTION: Final = 600.0
"""Seconds a reply row waits for a caller that may have gone away."""

HISTORY_RETENTION: Final = 3600.0
"""Seconds a followed entity's past state stays in `history` for a follower
that has not read it yet (a follower further behind misses states, logged)."""

DEAD_NODE_RETENTION: Final = 86_400.0
"""Seconds a dead node's row stays visible (for `inspect`) before it is swept."""


class Membership:
    """One node's side of membership and leases (a thin I/O adapter)."""

    def __init__(
        self,
        schema: str,
        node_id: str,
        fingerprint: str,
        partitions: int,
        lease: float,
        ownership: Ownership,
        deployment: Deployment,
        kind: str = "node",
    ) -> None:
        self.schema = schema
        self.deployment = deployment
        self.kind = kind
        self.node_id = node_id
        self.fingerprint = fingerprint
        self.partitions = partitions
        self.lease = lease
        self.ownership = ownership
        self._s = quote_schema(schema)
        self._orphans: list[int] = []
        """Partitions no live node may own, as last logged."""
        self.takeovers: list[tuple[int, int]] = []
        """`(partition, new epoch)` of every partition this node took, in order."""
        self.handing_over: Callable[[list[int]], Awaitable[None]] | None = None
        """Awaited before partitions are released (the node's runtimes let go first)."""

    async def check_joining(self, conn: asyncpg.Connection) -> None:
        """Raise `FingerprintMismatchError` if a live member runs a registry
        this one cannot run beside."""
        members = await self.deployment.live_members(conn, self.node_id)
        await self.deployment.learn(conn, [r["digest"] for r in members])
        self.deployment.check_join(members, "node" if self.kind == "node" else "client")

    async def join(self, conn: asyncpg.Connection) -> None:
        """Publish this registry's description, check it can run beside the
        live members' and register this member, atomically."""
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", join_lock_key(self.schema))
            # Under the lock a migration also holds: a newer pachytype that
            # migrated since our `migrate` is seen here, not after we joined.
            await check_not_newer(conn, self.schema)
            await self.deployment.publish(conn)
            await self.check_joining(conn)
            await conn.execute(
                f"INSERT INTO {self._s}.nodes (node_id, fingerprint, host, pid, kind, digest) "
                f"VALUES ($1, $2, $3, $4, $5, $6)",
                *member_row(self.node_id, self.kind, self.deployment.mine),
            )
            if self.kind == "node":
                await conn.execute(
                    f"INSERT INTO {self._s}.meta (key, value) VALUES ('fingerprint', $1) "
                    f"ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    self.fingerprint,
                )
            await conn.execute(
                "SELECT pg_notify($1, $2)", channel(self.schema, "members"), self.node_id
            )

    async def client_beat(self, conn: asyncpg.Connection) -> None:
        """A client's heartbeat: refresh its row, read what the nodes run
        (`SchemaError` if a newer pachytype migrated the schema)."""
        await check_not_newer(conn, self.schema)
        await conn.execute(
            f"INSERT INTO {self._s}.nodes (node_id, fingerprint, host, pid, kind, digest) "
            f"VALUES ($1, $2, $3, $4, $5, $6) "
            f"ON CONFLICT (node_id) DO UPDATE SET heartbeat_at = now()",
            *member_row(self.node_id, self.kind, self.deployment.mine),
        )
        await self.deployment.refresh(conn)

    async def beat(self, conn: asyncpg.Connection) -> bool:
        """One heartbeat round; returns whether this node's partitions changed.

        Raises `SchemaError` (renewing and taking nothing) if a newer
        pachytype migrated the schema: the node must stop serving."""
        s = self._s
        deployment = self.deployment
        async with conn.transaction():
            await check_not_newer(conn, self.schema)
            await conn.execute(
                f"INSERT INTO {s}.nodes (node_id, fingerprint, host, pid, kind, digest) "
                f"VALUES ($1, $2, $3, $4, $5, $6) "
                f"ON CONFLICT (node_id) DO UPDATE SET heartbeat_at = now()",
                *member_row(self.node_id, self.kind, deployment.mine),
            )
            live = {
                r["node_id"]: r["digest"]
                for r in await conn.fetch(
                    f"SELECT node_id, digest FROM {s}.nodes "
                    f"WHERE heartbeat_at > now() - $1 * interval '1 second' AND kind = 'node'",
                    self.lease,
                )
            }
            # Renewing adds this registry to the writers (a no-op once it, or one
            # that stores the same, is there; a non-key column: batches holding
            # KEY SHARE are not blocked).
            held = {
                r["partition"]: r["epoch"]
                for r in await conn.fetch(
                    f"UPDATE {s}.leases SET expires_at = now() + $2 * interval '1 second', "
                    f"writers = CASE WHEN writers && $4::text[] THEN writers "
                    f"ELSE array_append(writers, $3) END "
                    f"WHERE owner = $1 RETURNING partition, epoch",
                    self.node_id,
                    self.lease,
                    deployment.mine.digest,
                    deployment.same_writers(),
                )
            }
            writers = {
                r["partition"]: r["writers"]
                for r in await conn.fetch(f"SELECT partition, writers FROM {s}.leases")
            }
            await deployment.update(conn, live, writers)
        before = dict(self.ownership.epochs)
        lost = [p for p, e in before.items() if held.get(p) != e]
        if lost:
            log.warning("node %s lost partitions %s to other nodes", self.node_id, sorted(lost))
        self.ownership.drop(lost)
        assignment = assign(self.partitions, live, deployment.eligible_node)
        wanted = {p for p, node in assignment.items() if node == self.node_id}
        orphans = sorted(set(range(self.partitions)) - set(assignment))
        if orphans != self._orphans:  # said once, not at every beat
            self._orphans = orphans
        else:
            orphans = []
        if orphans:
            log.warning(
                "node %s: no live node may own partitions %s (they hold states only a newer "
                "version reads): their mail waits until a node of that version runs",
                self.node_id,
                orphans,
            )
        await self._release(conn, sorted(set(held) - wanted))
        for p in set(held) & wanted:
            self.ownership.epochs.setdefault(p, held[p])
        await self._take(conn, sorted(wanted - set(held)))
        changed = self.ownership.epochs != before
        if changed:
            self.ownership.changed.set()
        return changed

    async def _release(self, conn: asyncpg.Connection, partitions: list[int]) -> None:
        if not partitions:
            return
        log.info("node %s hands over partitions %s", self.node_id, partitions)
        self.ownership.drop(partitions)  # workers stop claiming before we wait
        if self.handing_over is not None:
            # Until the runtimes have dropped them: a batch built with them
            # would be refused after the release (and reload everything).
            await self.handing_over(partitions)
        s = self._s
        async with conn.transaction():
            # FOR UPDATE waits for this node's own batch still holding KEY SHARE.
            await conn.execute(
                f"SELECT 1 FROM {s}.leases WHERE partition = ANY($1::int[]) AND owner = $2 "
                f"FOR UPDATE",
                partitions,
                self.node_id,
            )
            await conn.execute(
                f"UPDATE {s}.leases SET owner = NULL, expires_at = '-infinity' "
                f"WHERE partition = ANY($1::int[]) AND owner = $2",
                partitions,
                self.node_id,
            )
            await conn.execute(
                "SELECT pg_notify($1, $2)", channel(self.schema, "members"), self.node_id
            )

    async def _take(self, conn: asyncpg.Connection, partitions: list[int]) -> None:
        if not partitions:
            return
        s = self._s
        deployment = self.deployment
        mine = deployment.mine.digest
        async with conn.transaction():
            rows = await conn.fetch(
                f"SELECT partition, writers, owner IS NOT NULL AS expired FROM {s}.leases "
                f"WHERE partition = ANY($1::int[]) "
                f"AND (owner IS NULL OR expires_at < now()) FOR UPDATE SKIP LOCKED",
                partitions,
            )
            await deployment.learn(conn, [d for r in rows for d in r["writers"]])
            # Checked again under the row lock: the writers may have grown since the beat.
            free = [r["partition"] for r in rows if deployment.may_own(mine, r["writers"])]
            expired = {r["partition"] for r in rows if r["expired"]}
            taken = await conn.fetch(
                f"UPDATE {s}.leases SET owner = $2, epoch = epoch + 1, "
                f"expires_at = now() + $3 * interval '1 second', "
                f"writers = CASE WHEN writers && $5::text[] THEN writers "
                f"ELSE array_append(writers, $4) END "
                f"WHERE partition = ANY($1::int[]) RETURNING partition, epoch",
                free,
                self.node_id,
                self.lease,
                mine,
                deployment.same_writers(),
            )
        deployment.wrote([r["partition"] for r in taken])
        for r in taken:
            self.ownership.epochs[r["partition"]] = r["epoch"]
            if r["partition"] in expired:
                self.ownership.expired.add(r["partition"])
            self.takeovers.append((r["partition"], r["epoch"]))
        if taken:
            log.info(
                "node %s took partitions %s", self.node_id, sorted(r["partition"] for r in taken)
            )

    async def sweep(self, conn: asyncpg.Connection) -> None:
        """Forget what nobody needs any more: dedupe ids (and the answers kept
        with them) older than `DEDUPE_RETENTION` (a resend comes within
        seconds), replies nobody fetched, watches and rows of nodes dead for a
        while, past states every follower has read (or older than
        `HISTORY_RETENTION`)."""
        s = self._s
        await conn.execute(
            f"DELETE FROM {s}.dedupe WHERE consumed_at < now() - $1 * interval '1 second'",
            DEDUPE_RETENTION,
        )
        await conn.execute(
            f"DELETE FROM {s}.replies WHERE created_at < now() - $1 * interval '1 second'",
            REPLY_RETENTION,
        )
        await conn.execute(
            f"DELETE FROM {s}.watches w USING {s}.nodes n WHERE w.node_id = n.node_id "
            f"AND n.heartbeat_at < now() - $1 * interval '1 second'",
            self.lease,
        )
        await conn.execute(
            f"DELETE FROM {s}.history h WHERE h.at < now() - $1 * interval '1 second' "
            f"OR NOT EXISTS (SELECT 1 FROM {s}.watches w WHERE w.entity_type = h.entity_type "
            f"AND w.entity_id = h.entity_id AND w.position < h.activations)",
            HISTORY_RETENTION,
        )
        await conn.execute(  # inboxes of asks whose asker stopped mid-ask (`pachytype._inbox`)
            f"DELETE FROM {s}.states t WHERE t.entity_type = $1 AND NOT EXISTS "
            f"(SELECT 1 FROM {s}.watches w WHERE w.entity_type = t.entity_type "
            f"AND w.entity_id = t.entity_id)",
            INBOX,
        )
        await conn.execute(
            f"DELETE FROM {s}.nodes WHERE heartbeat_at < now() - $1 * interval '1 second'",
            DEAD_NODE_RETENTION,
        )

    async def leave(self, conn: asyncpg.Connection) -> None:
        """Hand every partition over and leave the cluster (graceful stop)."""
        await self._release(conn, sorted(self.ownership.epochs))
        async with conn.transaction():
            await conn.execute(
                f"UPDATE {self._s}.leases SET owner = NULL, expires_at = '-infinity' "
                f"WHERE owner = $1",
                self.node_id,
            )
            await conn.execute(f"DELETE FROM {self._s}.nodes WHERE node_id = $1", self.node_id)
            await conn.execute(f"DELETE FROM {self._s}.watches WHERE node_id = $1", self.node_id)
            await conn.execute(
                "SELECT pg_notify($1, $2)", channel(self.schema, "members"), self.node_id
            )
