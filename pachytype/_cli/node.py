"""`pachytype node`: run one PostgreSQL node until SIGTERM/SIGINT.

The node joins the schema's cluster (refused if live members run a registry
it cannot run beside; another version of the same package that it reads,
or that reads it, is a rolling deploy: see `_postgres/deploy.py`), takes its fair
share of the partitions it may own and activates their entities.
On SIGTERM or SIGINT it finishes the batches in flight, hands its
partitions over and exits 0. If a worker fails, or a newer pachytype
migrates the schema, it hands its partitions over and exits 1, saying why.
The DSN's password is never printed (every
log record is scrubbed of it, errors are one line without it): prefer
`PACHYTYPE_DSN` in the environment to `--dsn` on the command line (command
lines are visible to every user of the machine).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta

import click

from pachytype._cli.support import (
    Mistake,
    check_schema_name,
    dsn_option,
    load_registry,
    postgres_errors,
    require_dsn,
)
from pachytype._postgres.dsn import SecretFilter, redact
from pachytype._postgres.schema import SchemaError
from pachytype._registry import Registry
from pachytype._runtime.durable.recent import RECENT_EVERY
from pachytype.ecosystems._postgres import Postgres

log = logging.getLogger("pachytype.node")


async def _run(
    dsn: str,
    registry: Registry,
    schema: str,
    lease: float,
    workers: int,
    partitions: int | None,
    node_id: str | None,
    recent_every: float,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    eco = Postgres(
        dsn,
        registry,
        schema=schema,
        lease=timedelta(seconds=lease),
        workers=workers,
        partitions=partitions,
        node_id=node_id,
        poll_interval=min(0.5, lease / 4),
        recent_every=recent_every,
    )
    async with eco:
        node = eco.node
        assert node is not None
        log.info(
            "node %s joined schema %r at %s with %s (%d partitions, lease %.1fs)",
            node.node_id,
            schema,
            redact(dsn),
            registry.package,
            eco.partitions,
            lease,
        )
        stopping = asyncio.ensure_future(stop.wait())
        failing = asyncio.ensure_future(node.failed())
        await asyncio.wait({stopping, failing}, return_when=asyncio.FIRST_COMPLETED)
        for task in (stopping, failing):
            task.cancel()
        failure = node.failure
        if failure is None:
            log.info("node %s stopping: handing its partitions over", node.node_id)
    if isinstance(failure, SchemaError):  # a newer pachytype migrated the tables
        raise SystemExit(
            f"pachytype node {eco.node_id}: {failure}; its partitions were handed over"
        )
    if failure is not None:
        raise SystemExit(
            f"pachytype node {eco.node_id}: a worker failed ({type(failure).__name__}: "
            f"{failure}); its partitions were handed over; restart the node"
        )
    log.info("node %s left", eco.node_id)


@click.command()
@dsn_option()
@click.option("--schema", default="pachytype", show_default=True, help="Schema of the tables.")
@click.option(
    "--lease", default=5.0, show_default=True, help="Partition lease, seconds (takeover time)."
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    help="Activation loops in this node: 1 makes the largest transactions (the least work "
    "per message); more commit side by side (a backlog drains faster when the database "
    "has cores to spare).",
)
@click.option("--partitions", type=int, default=None, help="Partition count (new schema only).")
@click.option("--node-id", default=None, help="Node id (default: host-pid-random).")
@click.option(
    "--recent-every",
    default=RECENT_EVERY,
    show_default=True,
    help="Most seconds a dead letter's recent messages wait to be written (what a kill of "
    "this node can take from them); 0 writes them with every commit.",
)
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
@click.argument("registry")
def node(
    dsn: str | None,
    schema: str,
    lease: float,
    workers: int,
    partitions: int | None,
    node_id: str | None,
    recent_every: float,
    verbose: bool,
    registry: str,
) -> None:
    """Run a PostgreSQL node for REGISTRY (MODULE:ATTRIBUTE, e.g. examples.bank.refs:REGISTRY)."""
    dsn = require_dsn(dsn, "node")
    check_schema_name(schema)
    if recent_every < 0:
        raise Mistake(f"--recent-every: {recent_every:g} seconds; give 0 or more")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(SecretFilter(dsn))  # whatever logs it, the password is not printed
    loaded = load_registry(registry, param_hint="REGISTRY")
    with postgres_errors(dsn):
        asyncio.run(_run(dsn, loaded, schema, lease, workers, partitions, node_id, recent_every))
