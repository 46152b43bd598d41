"""User mistakes: `pachytype generate` names the file and line and says the fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pachytype._generator import codegen_module

generate = codegen_module("generate")
problems = codegen_module("problems")


def _package(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, text in files.items():
        (package / name).write_text(textwrap.dedent(text).lstrip())
    return package


def _problems(root: Path, files: dict[str, str]) -> list[str]:
    package = _package(root, files)
    with pytest.raises(problems.GenerateError) as raised:
        generate.generate(package)
    return [str(p).replace(str(package), "pkg") for p in raised.value.problems]


def test_unresolvable_type_argument(tmp_path: Path) -> None:
    found = _problems(
        tmp_path,
        {
            "m.py": """
            from attrs import frozen
            from pachytype import Entity

            @frozen
            class Ping:
                pass

            class Pinger(Entity[str, Pnig, int]):
                pass
            """
        },
    )
    assert found == [
        "pkg/m.py:8: entity Pinger, the message type: cannot resolve `Pnig`: it is neither "
        "defined nor imported in pkg.m; define or import it (an import under "
        "`if TYPE_CHECKING:` is enough)"
    ]


def test_name_imported_from_a_module_that_lacks_it(tmp_path: Path) -> None:
    found = _problems(
        tmp_path,
        {
            "m.py": """
            from pachytype import Entity
            from .msgs import Ping

            class Pinger(Entity[str, Ping, int]):
                pass
            """,
            "msgs.py": "",
        },
    )
    assert found == [
        "pkg/m.py:4: entity Pinger, the message type: cannot resolve `Ping`: pkg.msgs neither "
        "defines nor imports it; fix the import or the spelling"
    ]


def test_message_class_that_is_not_attrs(tmp_path: Path) -> None:
    found = _problems(
        tmp_path,
        {
            "m.py": """
            from pachytype import Entity

            class Ping:
                pass

            class Pinger(Entity[str, Ping, int]):
                pass
            """
        },
    )
    assert found == [
        "pkg/m.py:3: message class Ping (of entity Pinger) is not an attrs class: decorate "
        "it with `@frozen` (`from attrs import frozen`)"
    ]


def test_two_message_classes_with_the_same_method_name(tmp_path: Path) -> None:
    found = _problems(
        tmp_path,
        {
            "a.py": """
            from attrs import frozen

            @frozen
            class Ping:
                n: int
            """,
            "b.py": """
            from attrs import frozen
            from pachytype import Entity
            from . import a

            @frozen
            class Ping:
                pass

            class Pinger(Entity[str, a.Ping | Ping, int]):
                pass
            """,
        },
    )
    assert found == [
        "pkg/b.py:9: entity Pinger: message classes pkg.a.Ping and pkg.b.Ping both become "
        "the ref method `ping`; rename one of them"
    ]


def test_message_base_class_instead_of_a_union(tmp_path: Path) -> None:
    found = _problems(
        tmp_path,
        {
            "m.py": """
            from attrs import frozen
            from pachytype import Entity

            class Msg:
                pass

            @frozen
            class Ping(Msg):
                pass

            @frozen
            class Pong(Msg):
                pass

            class Pinger(Entity[str, Msg, int]):
                pass
            """
        },
    )
    assert found == [
        "pkg/m.py:15: entity Pinger: the message type `Msg` is a base class (of Ping, Pong); "
        "messages are a union of classes, not a base class: use `Ping | Pong`"
    ]


def test_message_class_with_a_subclass_outside_the_union(tmp_path: Path) -> None:
    found = _problems(
        tmp_path,
        {
            "m.py": """
            from attrs import frozen
            from pachytype import Entity

            @frozen
            class Deposit:
                amount: int

            @frozen
            class BigDeposit(Deposit):
                pass

            class Account(Entity[str, Deposit, int]):
                pass
            """
        },
    )
    assert found == [
        "pkg/m.py:12: entity Account: the message type `Deposit` is a base class (of "
        "BigDeposit); messages are a union of classes, not a base class: use "
        "`Deposit | BigDeposit`"
    ]


def test_wrong_number_of_type_arguments(tmp_path: Path) -> None:
    found = _problems(
        tmp_path,
        {
            "m.py": """
            from attrs import frozen
            import pachytype

            @frozen
            class Ping:
                pass

            class Pinger(pachytype.Entity[str, Ping]):
                pass
            """
        },
    )
    assert found == [
        "pkg/m.py:8: entity Pinger: Entity takes 3 type arguments (Entity[Id, Msg, State]), "
        "got 2; write e.g. `class Pinger(Entity[str, PingerMsg, PingerState])`"
    ]


def test_entity_without_init_whose_state_does_not_allow_none(tmp_path: Path) -> None:
    found = _problems(
        tmp_path,
        {
            "m.py": """
            from attrs import frozen
            from pachytype import Activation, Entity

            @frozen
            class Ping:
                pass

            class Pinger(Entity[str, Ping, int]):
                def activate(self, msg: Ping, state: int) -> Activation[int]:
                    return [], state + 1

            class Quiet(Entity[str, Ping, int | None]):
                def activate(self, msg: Ping, state: int | None) -> Activation[int | None]:
                    return [], state
            """
        },
    )
    assert found == [
        "pkg/m.py:8: entity Pinger: it has no init, so an id never seen starts in state None, "
        "but its state type does not allow None; define `def init(self, id) -> ...` returning "
        "the first state, or add `| None` to the state type"
    ]


def test_two_entities_with_the_same_name(tmp_path: Path) -> None:
    found = _problems(
        tmp_path,
        {
            "a.py": """
            from attrs import frozen
            from pachytype import Entity

            @frozen
            class Ping:
                pass

            class HTTPServer(Entity[str, Ping, int | None]):
                pass
            """,
            "b.py": """
            from pachytype import Entity
            from .a import Ping

            class HttpServer(Entity[str, Ping, int | None]):
                pass
            """,
        },
    )
    assert found == [
        "pkg/b.py:4: entities pkg.a.HTTPServer and pkg.b.HttpServer are both named "
        "`http_server` (the snake_case of the class name), which names the entity type and "
        "its ref factory; rename one of them"
    ]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = _problems(
        tmp_path,
        {
            "m.py": """
            from attrs import frozen
            from pachytype import Entity

            @frozen
            class Ping:
                to: Addres[int]

            class Pinger(Entity[str, Ping, int]):
                state_version = VERSION
            """
        },
    )
    assert found == [
        "pkg/m.py:6: field `to` of `Ping`: cannot resolve `Addres`: it is neither defined nor "
        "imported in pkg.m; define or import it (an import under `if TYPE_CHECKING:` is enough)",
        "pkg/m.py:9: entity Pinger: state_version must be an int literal (e.g. "
        "`state_version = 2`), so the generator can read it",
    ]


def test_message_method_that_would_hide_a_ref_attribute(tmp_path: Path) -> None:
    found = _problems(
        tmp_path,
        {
            "m.py": """
            from attrs import frozen
            from pachytype import Entity

            @frozen
            class Post:
                pass

            class Office(Entity[str, Post, int]):
                pass
            """
        },
    )
    assert found == [
        "pkg/m.py:8: entity Office: message class Post would become the ref method `post`, "
        "which every ref already has; rename the class"
    ]


def test_message_type_that_is_not_a_class(tmp_path: Path) -> None:
    found = _problems(
        tmp_path,
        {
            "m.py": """
            from pachytype import Entity

            class Echo(Entity[str, str, int]):
                pass
            """
        },
    )
    assert found == [
        "pkg/m.py:3: entity Echo: `str` is not a message class: messages are attrs classes "
        "(`@frozen class Ping: ...`) or a union of them (`Ping | Pong`)"
    ]


def test_message_class_from_outside_the_package(tmp_path: Path) -> None:
    found = _problems(
        tmp_path,
        {
            "m.py": """
            from datetime import date
            from pachytype import Entity

            class Calendar(Entity[str, date, int]):
                pass
            """
        },
    )
    assert found == [
        "pkg/m.py:4: entity Calendar: message class `datetime.date` is imported from outside "
        "the package, so its fields cannot be read; declare message classes in the package"
    ]


def test_message_field_without_a_type(tmp_path: Path) -> None:
    found = _problems(
        tmp_path,
        {
            "m.py": """
            import attr
            from pachytype import Entity

            @attr.s(frozen=True)
            class Ping:
                n = attr.ib()

            class Pinger(Entity[str, Ping, None]):
                pass
            """
        },
    )
    assert found == ["pkg/m.py:6: field `n` of `Ping` has no type: annotate it (`n: int = ...`)"]


def test_generic_entity_class(tmp_path: Path) -> None:
    found = _problems(
        tmp_path,
        {
            "m.py": """
            from typing import TypeVar
            from attrs import frozen
            from pachytype import Entity

            S = TypeVar("S")

            @frozen
            class Ping:
                pass

            class Holder(Entity[str, Ping, S]):
                pass
            """
        },
    )
    assert found == [
        "pkg/m.py:11: entity Holder, the state type: `S` is a TypeVar, and the generator needs "
        "concrete types; generic entity classes are not supported: write the types themselves"
    ]


def test_directory_without_init(tmp_path: Path) -> None:
    with pytest.raises(problems.GenerateError) as raised:
        generate.generate(tmp_path)
    assert str(raised.value) == (
        f"{tmp_path}: not a package: it has no __init__.py; pass the directory of the "
        f"package that declares your entities"
    )
