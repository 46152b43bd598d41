"""pytest plugin (registered as the `pachytype` entry point): fixtures that
open ecosystems for tests.

`ecosystem` is parametrized over every ecosystem kind, so one test describes
a behaviour and runs against each; every test gets fresh, isolated
ecosystems (its own database file, or PostgreSQL schema, for durable ones)::

    async def test_counts(ecosystem: EcosystemFactory) -> None:
        async with ecosystem(REGISTRY) as eco:
            assert await eco.call(refs.counter(CounterId("c")).increment()) == 1

The kinds: `inmemory`, `localdisk`, `postgres` and `simulation`. The
`postgres` one runs when `PACHYTYPE_TEST_DSN` (default
postgresql://postgres@127.0.0.1:5432/test) reaches a server, and skips
saying why otherwise; under `CI=true` it fails instead, so a CI job that
lost its database cannot pass by skipping. Each ecosystem name gets its own
schema, dropped after the test.

**Reopening by name.** Calling the factory again with the same `name`
reopens the same ecosystem: its state is still there on every *durable*
kind (`factory.durable`): `localdisk` and `postgres` (stored), and
`simulation` (the same simulated world, within the test). `inmemory` is
not durable: reopening a name starts empty, and the factory says so with a
`NotDurableWarning`. A new name is always a fresh, isolated ecosystem.

**The `durable` marker.** A test marked `@pytest.mark.durable` runs only
on the durable kinds (the others are skipped, saying why)::

    @pytest.mark.durable
    async def test_survives_reopening(ecosystem: EcosystemFactory) -> None:
        async with ecosystem(REGISTRY) as eco:
            await eco.call(refs.counter(CounterId("c")).increment())
        async with ecosystem(REGISTRY) as eco:       # same name: same storage
            assert await eco.state(refs.counter(CounterId("c"))) == 1

**Stand-ins.** The factory takes any registry, including one with an entity
replaced by a stand-in (`REGISTRY.replacing(Payment, FakePayment)`, type-
checked: the stand-in must have the entity's id, message and state types)::

    async def test_checkout(ecosystem: EcosystemFactory) -> None:
        async with ecosystem(REGISTRY.replacing(Payment, FakePayment)) as eco:
            ...
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from attrs import field, frozen

from pachytype._ecosystem import Ecosystem
from pachytype._registry import Registry
from pachytype.ecosystems._inmemory import InMemory
from pachytype.ecosystems._localdisk import LocalDisk
from pachytype.simulation import Simulation

Opener = Callable[[Registry, Path], Ecosystem]
"""Opens an ecosystem for `registry`; the directory is the same for the same
name (files live there; openers that keep state in memory key it by it)."""

ECOSYSTEMS: dict[str, Opener] = {
    "inmemory": lambda registry, _dir: InMemory(registry),
    "localdisk": lambda registry, directory: LocalDisk(directory / "eco.db", registry),
    "simulation": lambda registry, _dir: Simulation(registry).ecosystem(),
}
"""The single-node ecosystems that need nothing but a directory, by kind
(each call opens a new one; a simulation here starts from a fresh world).
The `ecosystem` fixture adds `postgres` (a schema per name) and opens the
same simulated world again for the same name."""

KINDS: tuple[str, ...] = ("inmemory", "localdisk", "postgres", "simulation")
"""Every kind the `ecosystem` fixture runs over."""

DURABLE: set[str] = {"localdisk", "postgres", "simulation"}
"""Kinds whose state survives closing and reopening by the same name."""


class NotDurableWarning(UserWarning):
    """An ecosystem name was reopened on a kind that does not keep state."""


@frozen
class EcosystemFactory:
    """Opens ecosystems of one kind; calling it twice with the same `name`
    reopens the same ecosystem (its state kept on durable kinds, see
    `durable`), a new name gives a fresh one."""

    kind: str
    directory: Path
    _open: Opener
    _opened: set[str] = field(factory=set, eq=False, repr=False)

    @property
    def durable(self) -> bool:
        """Whether state survives closing and reopening by the same name."""
        return self.kind in DURABLE

    def __call__(self, registry: Registry, name: str = "default") -> Ecosystem:
        if name in self._opened and not self.durable:
            warnings.warn(
                f"the {self.kind} ecosystem {name!r} was opened before in this test; "
                f"{self.kind} is not durable, so it starts empty again (use a durable kind, "
                f"or mark the test @pytest.mark.durable to run it only on those)",
                NotDurableWarning,
                stacklevel=2,
            )
        self._opened.add(name)
        directory = self.directory / name
        directory.mkdir(parents=True, exist_ok=True)
        return self._open(registry, directory)


def _simulations() -> Opener:
    """Opens the same simulated world again for the same name (and registry)."""
    worlds: dict[tuple[Path, int], Simulation] = {}

    def open_simulation(registry: Registry, directory: Path) -> Ecosystem:
        key = (directory, id(registry))
        simulation = worlds.get(key)
        if simulation is None:
            simulation = worlds[key] = Simulation(registry)
        return simulation.ecosystem()

    return open_simulation


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "durable: run only on ecosystems whose state survives reopening by name "
        "(the `ecosystem` fixture skips the others)",
    )


@pytest.fixture(params=KINDS)
def ecosystem(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EcosystemFactory]:
    """A factory of ecosystems of one kind, once per kind in `KINDS`."""
    kind: str = request.param
    if request.node.get_closest_marker("durable") is not None and kind not in DURABLE:
        pytest.skip(f"{kind} is not durable (the test is marked durable)")
    if kind == "simulation":
        yield EcosystemFactory(kind, tmp_path, _simulations())
    elif kind == "postgres":
        # Imported here: asyncpg is loaded only by tests that use PostgreSQL.
        from pachytype._postgres.testing import drop_schemas, new_schema_name, require_postgres
        from pachytype.ecosystems._postgres import Postgres

        dsn = require_postgres()
        schemas: dict[Path, str] = {}

        def open_postgres(registry: Registry, directory: Path) -> Ecosystem:
            schema = schemas.setdefault(directory, new_schema_name())
            return Postgres(
                dsn,
                registry,
                schema=schema,
                partitions=8,
                lease=timedelta(seconds=2),
                poll_interval=0.1,
            )

        try:
            yield EcosystemFactory(kind, tmp_path, open_postgres)
        finally:
            drop_schemas(dsn, list(schemas.values()))
    else:
        yield EcosystemFactory(kind, tmp_path, ECOSYSTEMS[kind])


@pytest.fixture
def simulation() -> type[Simulation]:
    """Make simulations: `simulation(REGISTRY, seed=1)` is a fresh, isolated
    `Simulation` (deterministic for its seed)."""
    return Simulation
