"""Rolling deploys on PostgreSQL: what the live members of a schema run, who
may own which partition, and what a process may send.

Design note
-----------
* **Published descriptions.** Every member (node, or `node=False` client)
  publishes the `_compat.Description` of its registry in `registries` (by
  digest) and names it in its `nodes` row (`digest`, with `kind`). Joining
  is refused only when the newcomer and a live member truly conflict
  (`_compat.conflicts`: states neither reads from the other, messages
  neither decodes, or two different applications).
* **Writers.** Each lease row lists the digests of the registries that have
  owned its partition (`leases.writers`, appended when a node takes or
  renews it, unless one that stores the same states is there; never
  shrunk): any of them may have stored states there. A
  node is *eligible* for a partition only if it reads every state each
  writer stores (`_compat.eligible`); `assign` gives partitions only to
  eligible nodes, and a take re-checks it under the lease row's lock. So a
  node never loads a state written by a newer version: the partition stays
  with (or goes to) nodes that can, instead of its entities being held.
  Writers only grow, so an old node never gets back a partition a new one
  has owned (rolling back means stopping the new nodes and repairing
  states; see the README).
* **Sending.** A sender (client `send`/`call`, or a node routing what an
  activation returned) may send a message only if every live node eligible
  for the target's partition decodes it (`_compat.decodes`); a `call` also
  needs to read the state those nodes answer with. Otherwise it raises
  `VersionSkewError` naming the entity type, the message class, the nodes
  and what to deploy (from an activation, the activation fails and its
  message is a dead letter, as for any invalid envelope). When every live
  node runs this process's registry (the steady state), the check is one
  attribute read.
* **Views are refreshed by heartbeats** (a node's, and a client's own every
  lease / 4, or at once when a member joins or leaves). A view may be a
  heartbeat old: a node of an *older* version that starts in that window
  could receive a message it cannot decode (it becomes a dead letter, kept
  with its bytes). Deploy forward: start new nodes, then stop old ones.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs published

from pachytype._compat import (
    RELATIVE,
    Description,
    conflicts,
    decodes,
    eligible,
    reads_state,
    short_name,
)
from pachytype._errors import FingerprintMismatchError, VersionSkewError
from pachytype._postgres.schema import quote_schema

log = logging.getLogger("pachytype.postgres")


class Deployment:
    """One process's view of what the live members of a schema run."""

    def __init__(self, schema: str, mine: Description, lease: float) -> None:
        self.schema = schema
        self.mine = mine
        self.lease = lease
        self.descriptions: dict[str, Description] = {mine.digest: mine}
        self.nodes: dict[str, str | None] = {}
        """Live nodes: node id -> digest of their registry (None: a node of a
        pachytype that publishes none)."""
        self.writers: dict[int, tuple[str, ...]] = {}
        """Partition -> digests of the registries that have owned it."""
        self.uniform = True
        """Every live node runs this process's registry: nothing to check."""
        self._s = quote_schema(schema)
        self._eligible: dict[tuple[str, tuple[str, ...]], bool] = {}
        self._verdicts: dict[tuple[str, type, int, bool], str | None] = {}
        self._names: dict[type, str] = {}

    # -- the database --------------------------------------------------------

    async def publish(self, conn: asyncpg.Connection) -> None:
        """Store this registry's description (once per digest, ever)."""
        await conn.execute(
            f"INSERT INTO {self._s}.registries (digest, description) VALUES ($1, $2) "
            f"ON CONFLICT (digest) DO NOTHING",
            self.mine.digest,
            self.mine.to_json(),
        )

    async def learn(self, conn: asyncpg.Connection, digests: Iterable[str | None]) -> None:
        """Read the descriptions of `digests` this view does not know yet."""
        missing = sorted({d for d in digests if d is not None and d not in self.descriptions})
        if not missing:
            return
        for row in await conn.fetch(
            f"SELECT digest, description FROM {self._s}.registries WHERE digest = ANY($1)",
            missing,
        ):
            try:
                self.know(Description.from_json(row["description"]), row["digest"])
            except (ValueError, KeyError, TypeError) as error:
                log.warning("cannot read the description of registry %s: %s", row["digest"], error)

    async def live_members(self, conn: asyncpg.Connection, me: str) -> list[Any]:
        """Live members other than `me`: `(node_id, kind, fingerprint, digest)` rows."""
        return list(
            await conn.fetch(
                f"SELECT node_id, kind, fingerprint, digest FROM {self._s}.nodes "
                f"WHERE heartbeat_at > now() - $1 * interval '1 second' AND node_id <> $2 "
                f"ORDER BY node_id",
                self.lease,
                me,
            )
        )

    async def refresh(self, conn: asyncpg.Connection) -> None:
        """Read the live nodes and the writers of every partition (a client's beat)."""
        nodes = await conn.fetch(
            f"SELECT node_id, digest FROM {self._s}.nodes "
            f"WHERE heartbeat_at > now() - $1 * interval '1 second' AND kind = 'node'",
            self.lease,
        )
        writers = await conn.fetch(f"SELECT partition, writers FROM {self._s}.leases")
        await self.update(
            conn,
            {r["node_id"]: r["digest"] for r in nodes},
            {r["partition"]: tuple(r["writers"]) for r in writers},
        )

    async def update(
        self,
        conn: asyncpg.Connection,
        nodes: Mapping[str, str | None],
        writers: Mapping[int, Sequence[str]],
    ) -> None:
        """Take a new reading of the live nodes and the partitions' writers
        (reading the descriptions it does not know yet)."""
        await self.learn(conn, [*nodes.values(), *(d for w in writers.values() for d in w)])
        self.see(nodes, writers)

    def see(self, nodes: Mapping[str, str | None], writers: Mapping[int, Sequence[str]]) -> None:
        """The live nodes (id -> digest) and each partition's writers, now."""
        new_writers = {p: tuple(w) for p, w in writers.items()}
        if dict(nodes) != self.nodes or new_writers != self.writers:
            self._verdicts.clear()
        self.nodes = dict(nodes)
        self.writers = new_writers
        self.uniform = all(d in (None, self.mine.digest) for d in self.nodes.values())

    def same_writers(self) -> list[str]:
        """This registry's digest, and those of the known registries that store
        exactly the same states (`Description.writes`): a partition listing
        any of them needs no new writer, so message-only deploys do not grow
        the lists."""
        mine = self.mine
        same = (d for d, x in self.descriptions.items() if x.writes == mine.writes)
        return [mine.digest, *sorted(d for d in same if d != mine.digest)]

    def wrote(self, partitions: Iterable[int]) -> None:
        """This node took `partitions`: its registry is among their writers now."""
        writers = dict(self.writers)
        same = set(self.same_writers())
        for p in partitions:
            if not same & set(writers.get(p, ())):
                writers[p] = (*writers.get(p, ()), self.mine.digest)
        self.see(self.nodes, writers)

    def know(self, description: Description, digest: str | None = None) -> None:
        """Add a description this view may meet, published under `digest`
        (default: its own)."""
        self.descriptions.setdefault(digest or description.digest, description)

    # -- joining ---------------------------------------------------------------

    def check_join(self, members: Sequence[Any], what: str) -> None:
        """Raise `FingerprintMismatchError` if a live member runs a registry
        this one cannot run beside (`members`: rows of `live_members`)."""
        for row in members:
            theirs = self.descriptions.get(row["digest"]) if row["digest"] else None
            if theirs is None:
                if row["fingerprint"] == self.mine.fingerprint:
                    continue
                # A member of an older pachytype: it publishes no description.
                found = [
                    f"it runs fingerprint {row['fingerprint'][:12]} and publishes no "
                    f"description of its registry (an older pachytype)"
                ]
            else:
                found = conflicts(self.mine, theirs)
            if found:
                raise FingerprintMismatchError(
                    f"{what} with registry {self.mine.short()} cannot join schema "
                    f"{self.schema!r}: live {row['kind']} {row['node_id']} runs registry "
                    f"{theirs.short() if theirs else repr(row['fingerprint'][:12])}, and "
                    f"{'; '.join(found)}. Two versions can run side by side only if the newer "
                    f"reads the older's states (same shape, a compatible change, or an "
                    f"@upgrade chain) and their message classes decode one way or the other. "
                    f"Stop the old nodes first (SIGTERM hands their partitions over; mail "
                    f"waits in the database), then start the new version; or run "
                    f"`pachytype generate` if this code is simply stale"
                )

    # -- partitions --------------------------------------------------------------

    def may_own(self, digest: str | None, writers: Sequence[str]) -> bool:
        """Whether a node running `digest` reads every state `writers` stored."""
        if digest is None or all(w == digest for w in writers):
            return True
        key = (digest, tuple(writers))
        found = self._eligible.get(key)
        if found is None:
            node = self.descriptions.get(digest)
            known = [self.descriptions[w] for w in writers if w in self.descriptions]
            # A writer whose description cannot be read: only its own kind may own it.
            found = node is not None and len(known) == len(writers) and eligible(node, known)
            self._eligible[key] = found
        return found

    def eligible_node(self, partition: int, node_id: str) -> bool:
        """Whether the live node `node_id` may own `partition` (for `assign`)."""
        return self.may_own(self.nodes.get(node_id), self.writers.get(partition, ()))

    # -- sending -------------------------------------------------------------------

    def check_send(self, entity: str, cls: type, partition: int, call: bool = False) -> None:
        """Raise `VersionSkewError` unless every live node that may own
        `partition` decodes a `cls` message to `entity` as this process
        encodes it (and, for a `call`, answers with a state it reads)."""
        if self.uniform:
            return
        key = (entity, cls, partition, call)
        if key not in self._verdicts:
            self._verdicts[key] = self._verdict(entity, cls, partition, call)
        refused = self._verdicts[key]
        if refused is not None:
            raise VersionSkewError(refused)

    def _verdict(self, entity: str, cls: type, partition: int, call: bool) -> str | None:
        """Why a `cls` message to `entity` in `partition` must not be sent (None: it may)."""
        name = self._name(cls)
        writers = self.writers.get(partition, ())
        by_digest: dict[str, list[str]] = {}
        for node_id, digest in sorted(self.nodes.items()):
            if digest is not None and digest != self.mine.digest and self.may_own(digest, writers):
                by_digest.setdefault(digest, []).append(node_id)
        for digest, node_ids in sorted(by_digest.items()):
            theirs = self.descriptions.get(digest)
            if theirs is None:
                continue
            nodes = f"live node{'s' if len(node_ids) > 1 else ''} {', '.join(node_ids)}"
            why = decodes(theirs, self.mine, entity, name)
            if why is not None:
                return (
                    f"cannot send {short_name(name)} to entity type {entity!r}: {nodes} "
                    f"(which may own its partition {partition}) cannot decode it: {why}. Deploy "
                    f"this version ({self.mine.short()}) to every node first (start the new "
                    f"nodes, then stop the old ones with SIGTERM), then send it; nothing was sent"
                )
            if call:
                why = reads_state(self.mine, theirs, entity)
                if why is not None:
                    return (
                        f"cannot call entity type {entity!r} with {short_name(name)}: {nodes} "
                        f"(which may own its partition {partition}) would answer with a state "
                        f"this process cannot read: {why}. Deploy the new version here too, or "
                        f"use send (which needs no answer); nothing was sent"
                    )
        return None

    def _name(self, cls: type) -> str:
        name = self._names.get(cls)
        if name is None:
            name = f"{cls.__module__}.{cls.__qualname__}"
            package = self.mine.package
            if name.startswith(package + "."):
                name = RELATIVE + name[len(package) :]
            self._names[cls] = name
        return name


def member_row(node_id: str, kind: str, mine: Description) -> tuple[str, str, str, int, str, str]:
    """The `nodes` row of a member: `(node_id, fingerprint, host, pid, kind, digest)`."""
    return (node_id, mine.fingerprint, socket.gethostname(), os.getpid(), kind, mine.digest)
