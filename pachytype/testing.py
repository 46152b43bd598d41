"""pytest plugin (registered as the `pachytype` entry point): fixtures that
open ecosystems for tests.

`ecosystem` is parametrized over every single-node ecosystem, so one test
describes a behaviour and runs against each; every test gets fresh,
isolated ecosystems (its own database file for durable ones)::

    async def test_counts(ecosystem: EcosystemFactory) -> None:
        async with ecosystem(REGISTRY) as eco:
            assert await eco.call(refs.counter(CounterId("c")).increment()) == 1
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from attrs import frozen

from pachytype._ecosystem import Ecosystem
from pachytype._registry import Registry
from pachytype.ecosystems._inmemory import InMemory
from pachytype.ecosystems._localdisk import LocalDisk
from pachytype.simulation import Simulation

Opener = Callable[[Registry, Path], Ecosystem]
"""Opens an ecosystem for `registry`, keeping any files under the given directory."""

ECOSYSTEMS: dict[str, Opener] = {
    "inmemory": lambda registry, _dir: InMemory(registry),
    "localdisk": lambda registry, directory: LocalDisk(directory / "eco.db", registry),
    "simulation": lambda registry, _dir: Simulation(registry).ecosystem(),
}
"""Every single-node ecosystem the `ecosystem` fixture runs over, by name."""

DURABLE: set[str] = {"localdisk"}
"""Names in ECOSYSTEMS whose state survives closing and reopening."""


@frozen
class EcosystemFactory:
    """Opens ecosystems of one kind; calling it twice with the same `name`
    reopens the same storage (for durable kinds), a new name gives a fresh one."""

    kind: str
    directory: Path
    _open: Opener

    @property
    def durable(self) -> bool:
        """Whether state survives closing and reopening."""
        return self.kind in DURABLE

    def __call__(self, registry: Registry, name: str = "default") -> Ecosystem:
        directory = self.directory / name
        directory.mkdir(parents=True, exist_ok=True)
        return self._open(registry, directory)


@pytest.fixture(params=sorted(ECOSYSTEMS))
def ecosystem(request: pytest.FixtureRequest, tmp_path: Path) -> EcosystemFactory:
    """A factory of ecosystems of one kind, once per kind in `ECOSYSTEMS`."""
    kind: str = request.param
    return EcosystemFactory(kind, tmp_path, ECOSYSTEMS[kind])


@pytest.fixture
def simulation() -> type[Simulation]:
    """Make simulations: `simulation(REGISTRY, seed=1)` is a fresh, isolated
    `Simulation` (deterministic for its seed)."""
    return Simulation
