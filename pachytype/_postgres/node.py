"""A PostgreSQL node: membership, lease upkeep, and the shared durable runtime
(`pachytype._runtime.durable`) over `PostgresStore`s of the partitions it holds.

Design note
-----------
* **Workers are runtimes.** A node runs `workers` `DurableRuntime`s, each
  over a `PostgresStore` serving the owned partitions `p` with
  `p % workers == w`: two runtimes never share an entity. One (the
  default) already claims and builds beside its commit under way
  (`_runtime/durable/pipeline.py`) and makes the largest transactions, the
  least work per message; more commit side by side on as many
  connections, which drains a backlog faster when the database has cores
  to spare. Everything about
  scheduling (group commit, attempts, held entities, timers on the clock,
  events, answers, recent messages) is the runtime's, as on LocalDisk.
* **The heartbeat** (every `lease / 4`, or at once when a node joins or
  leaves) keeps the leases (`_postgres.lease.Membership`); when this node's
  partitions change it rings every store, whose next `news()` tells its
  runtime what was lost and recovers what was gained.
* **Wake-ups.** A NOTIFY of new mail for an owned partition rings the store
  serving it; a poll every `poll_interval` rings them all (a notification
  lost with the LISTEN connection delays mail by at most that much).
* **Stopping** stops the runtimes first (each after the batch under way
  commits; their recent messages are written while the leases are still
  ours), then hands every partition over. A partition handed over in a
  rebalance keeps its recent messages too: the release waits (`let_go`)
  until the runtime has dropped it and written them (`PostgresStore.leave`).
* **Stopping serving** (the node stays up, owning nothing): when a worker's
  runtime fails, or a heartbeat finds the schema migrated by a newer
  pachytype (`SchemaError`: this library's SQL no longer fits its tables),
  the node hands every partition over at once; `failed()` says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import Callable

import asyncpg  # type: ignore[import-untyped]  # no stubs published

from pachytype._budget import DEFAULT_BUDGET
from pachytype._clock import Clock, SystemClock
from pachytype._codec import Codec
from pachytype._core.held import RETRY_HELD
from pachytype._postgres.lease import Membership, Ownership
from pachytype._postgres.schema import SchemaError
from pachytype._postgres.store import PostgresStore
from pachytype._registry import Registry
from pachytype._runtime.durable import DurableRuntime
from pachytype._runtime.durable.recent import RECENT_EVERY
from pachytype._store import AnswerRow

log = logging.getLogger("pachytype.postgres")

_SWEEP_EVERY = 40
"""Heartbeats between sweeps of old dedupe ids, replies and dead nodes."""


class Node:
    """Owns partitions of one schema and runs their entities."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: Registry,
        codec: Codec,
        membership: Membership,
        *,
        workers: int,
        batch: int,
        poll_interval: float,
        is_local: Callable[[uuid.UUID], bool],
        resolve: Callable[[uuid.UUID, AnswerRow], None],
        clock: Clock | None = None,
        activation_budget: float = DEFAULT_BUDGET,
        retry_held: float = RETRY_HELD,
        recent_every: float = RECENT_EVERY,
    ) -> None:
        self.pool = pool
        self.registry = registry
        self.membership = membership
        self.ownership: Ownership = membership.ownership
        self.node_id = membership.node_id
        self.workers = workers
        self.poll_interval = poll_interval
        self.stores = [
            PostgresStore(
                pool,
                membership.schema,
                membership.partitions,
                self.node_id,
                self.ownership,
                _share(w, workers),
                is_local,
                resolve,
                clock or SystemClock(),
            )
            for w in range(workers)
        ]
        self.runtimes = [
            DurableRuntime(
                registry,
                store,
                codec,
                max_batch=batch,
                name="Postgres",
                activation_budget=activation_budget,
                retry_held=retry_held,
                recent_every=recent_every,
                clock=clock,
            )
            for store in self.stores
        ]
        deployment = membership.deployment

        def gate(entity_type: str, cls: type, partition: int) -> None:
            # Nodes of another version may own the target: may they decode it?
            if not deployment.uniform:
                deployment.check_send(entity_type, cls, partition)

        for runtime in self.runtimes:
            runtime.gate = gate
            runtime.on_failure = self._runtime_failed
        self.failure: BaseException | None = None
        """Why this node stopped serving (a worker's store failed), or None."""
        self._failed = asyncio.Event()
        membership.handing_over = self._let_go
        self._members = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Join (fingerprint check), take a first share of partitions, start the runtimes."""
        async with self.pool.acquire() as conn:
            await self.membership.join(conn)
            await self.membership.beat(conn)
        try:
            for runtime in self.runtimes:
                await runtime.open()
        except BaseException:
            # Their kept connections go back: the pool's close waits for them.
            for store in self.stores:
                await store.close()
            raise
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._heartbeat(), name=f"{self.node_id} heartbeat"))
        self._tasks.append(loop.create_task(self._poll(), name=f"{self.node_id} poll"))
        self._tasks.append(loop.create_task(self._dropped(), name=f"{self.node_id} drops"))

    async def stop(self) -> None:
        """Stop the runtimes (their last writes under our leases), then hand over."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for runtime in self.runtimes:
            await runtime.stop()
        # Stopped, the runtimes build no batch: the release need not wait for
        # them to let go (they never would say so; it waited an eighth of a lease).
        self.membership.handing_over = None
        try:
            async with self.pool.acquire() as conn:
                await self.membership.leave(conn)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            log.warning("node %s could not hand its partitions over: %s", self.node_id, error)

    async def failed(self) -> BaseException:
        """Wait until the node stops serving because a worker failed; the error.

        It has then handed its partitions over (or will at its next beat):
        other nodes serve them. `pachytype node` exits with status 1."""
        await self._failed.wait()
        assert self.failure is not None
        return self.failure

    def _runtime_failed(self, error: BaseException) -> None:
        # One worker can no longer commit: keeping its leases would strand
        # its partitions' mail for as long as this process lives, and the
        # other workers share the same fate soon. Leave the cluster at once.
        self._stop_serving(
            error, f"a worker failed ({type(error).__name__}: {error})", "restart the process"
        )

    def _stop_serving(self, error: BaseException, why: str, then: str) -> None:
        if self.failure is None:
            self.failure = error
            log.error(
                "node %s: %s; handing every partition over and serving nothing more (%s)",
                self.node_id,
                why,
                then,
            )
            self._failed.set()
            self._members.set()  # the heartbeat leaves now

    def wake(self, partition: int) -> None:
        """New mail for `partition`: ring the store serving it (if it is ours)."""
        if partition in self.ownership.epochs:
            self.stores[partition % self.workers].ring()

    async def _let_go(self, partitions: list[int]) -> None:
        """Before a release: until every runtime has dropped `partitions` (at
        most an eighth of a lease; a slow commit is then refused instead)."""
        timeout = self.membership.lease / 8
        await asyncio.gather(*(store.let_go(partitions, timeout) for store in self.stores))

    def wake_all(self) -> None:
        for store in self.stores:
            store.ring()

    def members_changed(self) -> None:
        """A node joined or left: run a heartbeat now."""
        self._members.set()

    def blocked(self) -> dict[tuple[str, str], BaseException]:
        """Entities held because their stored state cannot be loaded."""
        held: dict[tuple[str, str], BaseException] = {}
        for runtime in self.runtimes:
            held.update(runtime.held())
        return held

    @property
    def activations(self) -> int:
        return sum(runtime.activations for runtime in self.runtimes)

    # -- background ----------------------------------------------------------------

    async def _heartbeat(self) -> None:
        interval = self.membership.lease / 4
        for beat in itertools.count():
            if self.failure is not None:
                await self._leave_failed()
                return
            try:
                async with self.pool.acquire() as conn:
                    changed = await self.membership.beat(conn)
                    if beat % _SWEEP_EVERY == _SWEEP_EVERY - 1:
                        await self.membership.sweep(conn)
                if changed:
                    self.wake_all()
            except SchemaError as error:
                # A newer pachytype migrated the tables: our SQL may no longer fit.
                self._stop_serving(error, str(error), "stop this process")
                continue
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("node %s heartbeat failed: %s", self.node_id, error)
            except Exception:
                # A bug must not silently stop the heartbeat (the leases would
                # stay renewed by nobody); log it whole and beat again.
                log.exception("node %s heartbeat failed unexpectedly", self.node_id)
            self._members.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._members.wait(), interval)

    async def _leave_failed(self) -> None:
        """Hand every partition over after a worker failed (tried until it works:
        the failure may be the database's, for a while)."""
        while True:
            try:
                async with self.pool.acquire() as conn:
                    await self.membership.leave(conn)
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("node %s could not hand its partitions over: %s", self.node_id, error)
            await asyncio.sleep(self.membership.lease / 4)

    async def _dropped(self) -> None:
        """Partitions leave at once (before a release waits for our commits):
        the runtimes drop them before building a batch that a fence refuses."""
        changed = self.ownership.changed
        while True:
            await changed.wait()
            changed.clear()
            self.wake_all()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            self.wake_all()


def _share(w: int, workers: int) -> Callable[[int], bool]:
    def serves(partition: int) -> bool:
        return partition % workers == w

    return serves
