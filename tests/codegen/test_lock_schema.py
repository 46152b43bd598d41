"""The schema is the same whether the generator computes it statically or the
runtime computes it from live classes; a stale `refs.py` is refused at open."""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from codegen.fingerprint import schema as static_schema
from codegen.generate import generate, scan_package, write
from codegen.problems import GenerateError
from pachytype import InMemory, Registry, StaleRegistryError
from pachytype._schema import (
    canonical,
    fingerprint,
    live_schema,
    messages_fingerprint,
    state_fingerprint,
)

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGES = sorted(
    str(p.parent.relative_to(ROOT))
    for pattern in ["examples/*/refs.py", "tests/golden/*/refs.py", "tests/conformance/refs.py"]
    for p in ROOT.glob(pattern)
)


def registry_in(directory: str) -> Registry:
    module = importlib.import_module(directory.replace("/", ".") + ".refs")
    registry = module.REGISTRY
    assert isinstance(registry, Registry)
    return registry


@pytest.mark.parametrize("directory", PACKAGES)
def test_static_and_live_schemas_agree(directory: str) -> None:
    static = static_schema(scan_package(ROOT / directory))
    registry = registry_in(directory)
    live = live_schema(registry)
    assert live == static
    assert fingerprint(live) == registry.fingerprint
    for entity in live.entities:
        assert len(state_fingerprint(live, entity)) == 64
        assert len(messages_fingerprint(live, entity)) == 64


def test_canonical_spellings() -> None:
    from typing import Literal, NewType, Optional

    from examples.tcp.stream import Ack
    from pachytype import Address

    Name = NewType("Name", str)
    assert canonical(tuple[Name, ...]) == "tuple[str, ...]"
    assert canonical(Optional[int]) == "int | None"  # noqa: UP045 (the spelling under test)
    assert canonical(Address[Ack]) == "pachytype.Address[examples.tcp.stream.Ack]"
    assert canonical(Literal["a", 1]) == 'typing.Literal["a", 1]'
    assert canonical(dict[str, list[int]]) == "dict[str, list[int]]"


def test_state_fingerprint_ignores_messages_and_follows_nested_classes() -> None:
    registry = registry_in("examples/tcp")
    live = live_schema(registry)
    client = next(e for e in live.entities if e.name == "client")
    # ClientState holds Segments, which hold an Address[Ack]: all in the state's structure.
    classes = {"examples.tcp.stream.ClientState", "examples.tcp.stream.Segment"}
    assert classes <= set(live.classes)
    assert state_fingerprint(live, client) != messages_fingerprint(live, client)


@pytest.fixture
def counter_copy(tmp_path: Path) -> Iterator[Path]:
    """examples/counter copied as the package `stale_counter`, with its own refs.py."""
    package = tmp_path / "stale_counter"
    shutil.copytree(ROOT / "examples" / "counter", package)
    (package / "refs.py").unlink()
    source = package / "counter.py"
    source.write_text(source.read_text().replace("examples.counter", "stale_counter"))
    write(generate(package))
    sys.path.insert(0, str(tmp_path))
    yield package
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m.split(".")[0] == "stale_counter"]:
        del sys.modules[name]


async def test_a_fresh_registry_opens(counter_copy: Path) -> None:
    refs = importlib.import_module("stale_counter.refs")
    async with InMemory(refs.REGISTRY) as eco:
        assert await eco.call(refs.counter("c").increment()) == 1


async def test_a_stale_refs_py_is_refused(counter_copy: Path) -> None:
    source = counter_copy / "counter.py"
    source.write_text(source.read_text().replace("    amount: int = 1", "    amount: float = 1"))
    refs = importlib.import_module("stale_counter.refs")
    with pytest.raises(StaleRegistryError) as error:
        async with InMemory(refs.REGISTRY):
            pass
    assert str(error.value).startswith(
        "refs.py is stale: run pachytype generate stale_counter (the entities of "
        "'stale_counter' changed since it was generated: its fingerprint is "
    )
    assert str(error.value).endswith("; the ecosystem was not opened")


OUTER = '''\
"""A message whose narrowed address names a class of another package, for mypy only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrs import frozen

from pachytype import Activation, Address, Entity

if TYPE_CHECKING:
    from examples.ping_pong.ping import Pong


@frozen
class Ask:
    """Answer to `reply_to`."""

    reply_to: Address[Pong]


class Oracle(Entity[str, Ask, int]):
    """Counts questions."""

    def init(self, id: str) -> int:
        return 0

    def activate(self, msg: Ask, state: int) -> Activation[int]:
        return [], state + 1
'''


async def test_a_type_only_mypy_sees_from_outside_is_no_false_alarm(tmp_path: Path) -> None:
    package = tmp_path / "outer_pkg"
    package.mkdir()
    (package / "__init__.py").write_text('"""Outer."""\n')
    (package / "oracle.py").write_text(OUTER)
    write(generate(package))
    sys.path.insert(0, str(tmp_path))
    try:
        refs = importlib.import_module("outer_pkg.refs")
        from examples.ping_pong.ping import PingerId
        from examples.ping_pong.refs import pinger

        # roundtrip=False: an address of an entity type outside this registry
        # could not be stored (it type-checks, which is what this test is about).
        async with InMemory(refs.REGISTRY, roundtrip=False) as eco:
            assert await eco.call(refs.oracle("o").ask(reply_to=pinger(PingerId("p")))) == 1
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.split(".")[0] == "outer_pkg"]:
            del sys.modules[name]


ASKER = '''\
"""Ids and fields whose NewType comes from another package."""

from __future__ import annotations

from attrs import frozen

from examples.ping_pong.ping import PingerId
from pachytype import Activation, Entity


@frozen
class Hail:
    """From a pinger."""

    by: PingerId


class Porter(Entity[PingerId, Hail, tuple[PingerId, ...]]):
    """Remembers who hailed."""

    def init(self, id: PingerId) -> tuple[PingerId, ...]:
        return ()

    def activate(self, msg: Hail, state: tuple[PingerId, ...]) -> Activation[tuple[PingerId, ...]]:
        return [], (*state, msg.by)
'''


def test_a_newtype_of_another_package_is_spelled_by_name_on_both_sides(tmp_path: Path) -> None:
    package = tmp_path / "porter_pkg"
    package.mkdir()
    (package / "__init__.py").write_text('"""Porter."""\n')
    (package / "porter.py").write_text(ASKER)
    static = static_schema(scan_package(package))
    write(generate(package))
    sys.path.insert(0, str(tmp_path))
    try:
        registry = importlib.import_module("porter_pkg.refs").REGISTRY
        live = live_schema(registry)
        assert live == static
        assert live.entities[0].id == "examples.ping_pong.ping.PingerId"
        assert fingerprint(live) == registry.fingerprint
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.split(".")[0] == "porter_pkg"]:
            del sys.modules[name]


ENUMS = '''\
"""Enums of every flavour the generator reads statically."""

from __future__ import annotations

import enum
from enum import Enum, auto

from attrs import frozen

from pachytype import Activation, Entity


class Plain(Enum):
    """Literal values, an alias, an annotated member, a method."""

    RED = "red"
    CRIMSON = "red"
    BLUE: str = "blue"
    _ignore_ = ["helper"]

    def shout(self) -> str:
        return str(self.value).upper()


class Counted(enum.IntEnum):
    """auto() counts on from the last int."""

    ONE = auto()
    TEN = 10
    ELEVEN = auto()
    TWELVE = "12"


class Named(enum.StrEnum):
    """auto() is the lower-cased name."""

    NORTH = auto()
    SOUTH = "S"


class Mixed(str, Enum):
    """A str mixin converts values."""

    ONE = 1
    TWO = auto()


class Perm(enum.Flag):
    """Only single bits are iterated over."""

    NONE = 0
    R = auto()
    W = auto()
    RW = 3
    X = 4


class Base(Enum):
    """A base without members."""


class Derived(Base):
    """Members on a package base."""

    A = (1, "a")
    B = -2.5


@frozen
class Palette:
    """All of them."""

    plain: Plain = Plain.RED
    counted: Counted = Counted.ONE
    named: Named = Named.NORTH
    mixed: Mixed = Mixed.ONE
    perm: Perm = Perm.R
    derived: Derived = Derived.A


class Painter(Entity[str, Palette, Palette]):
    """Keeps the last palette."""

    def init(self, id: str) -> Palette:
        return Palette()

    def activate(self, msg: Palette, state: Palette) -> Activation[Palette]:
        return [], msg
'''


def test_enum_members_read_statically_are_the_ones_python_makes(tmp_path: Path) -> None:
    package = tmp_path / "enum_pkg"
    package.mkdir()
    (package / "__init__.py").write_text('"""Enums."""\n')
    (package / "paint.py").write_text(ENUMS)
    static = static_schema(scan_package(package))
    write(generate(package))
    sys.path.insert(0, str(tmp_path))
    try:
        registry = importlib.import_module("enum_pkg.refs").REGISTRY
        live = live_schema(registry)
        assert live == static
        members = {
            name.rpartition(".")[2]: [(m.name, m.value) for m in c.members]
            for name, c in live.classes.items()
            if c.members
        }
        assert members == {
            "Plain": [("RED", '"red"'), ("BLUE", '"blue"')],
            "Counted": [("ONE", "1"), ("TEN", "10"), ("ELEVEN", "11"), ("TWELVE", "12")],
            "Named": [("NORTH", '"north"'), ("SOUTH", '"S"')],
            "Mixed": [("ONE", '"1"'), ("TWO", '"2"')],
            "Perm": [("R", "1"), ("W", "2"), ("X", "4")],
            "Derived": [("A", '(1, "a")'), ("B", "-2.5")],
        }
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.split(".")[0] == "enum_pkg"]:
            del sys.modules[name]


def test_an_enum_value_the_generator_cannot_compute_is_a_problem(tmp_path: Path) -> None:
    package = tmp_path / "enum_bad"
    package.mkdir()
    (package / "__init__.py").write_text('"""Enums."""\n')
    source = ENUMS.replace('    SOUTH = "S"\n', '    SOUTH = "S" + "OUTH"\n')
    (package / "paint.py").write_text(source)
    line = source.splitlines().index('    SOUTH = "S" + "OUTH"') + 1
    with pytest.raises(GenerateError) as error:
        scan_package(package)
    assert [str(p) for p in error.value.problems] == [
        f"{package / 'paint.py'}:{line}: enum member `Named.SOUTH`: the generator cannot "
        "compute its value, and stored data holds enum values, so the schema lock must know "
        'it; write it as a literal (`SOUTH = "south"`)'
    ]
