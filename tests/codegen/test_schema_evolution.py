"""Every kind of change to what decoding depends on, classified by the lock, and
the classification proven against the real codec: data the old code encoded is
decoded by the new code; a change called compatible must decode, a change
called incompatible must fail (except where the lock is knowingly cautious,
said per case)."""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from codegen.generate import generate, write
from pachytype import DecodeError
from pachytype._cli.check import check
from pachytype._cli.lock import lock
from pachytype._codec import Codec

CART = '''\
"""Everything decoding depends on: enum, Literal, NewType, nested classes,
tuples, frozensets, dicts, optionals, defaults, a tagged union."""

from __future__ import annotations

import enum
from typing import Literal, NewType

from attrs import field, frozen

from pachytype import Activation, Entity

Sku = NewType("Sku", str)


class Color(enum.Enum):
    """A line's color."""

    RED = "red"
    BLUE = "blue"


@frozen
class Line:
    """One line of the cart."""

    sku: Sku
    quantity: int


@frozen
class Note:
    """A note."""

    text: str


@frozen
class Flag:
    """A flag."""

    on: bool


@frozen
class CartState:
    """The cart."""

    lines: tuple[Line, ...] = ()
    colors: tuple[Color, ...] = ()
    modes: tuple[Literal["a", "b"], ...] = ()
    tags: frozenset[str] = frozenset()
    prices: dict[str, int] = field(factory=dict)
    coupon: str | None = None
    first: Note = Note("n")
    extra: Note | Flag = Note("n")
    owner: str = "o"


@frozen
class AddLine:
    """Add a line."""

    line: Line


@frozen
class Clear:
    """Empty the cart."""


Msg = AddLine | Clear


class Cart(Entity[str, Msg, CartState]):
    """One cart."""

    def init(self, id: str) -> CartState:
        return CartState()

    def activate(self, msg: Msg, state: CartState) -> Activation[CartState]:
        return [], state


def samples() -> tuple[CartState, list[Msg]]:
    """A state and messages that use every value the types allow."""
    state = CartState(
        lines=(Line(Sku("s"), 2),),
        colors=tuple(Color),
        modes=("a", "b"),
        tags=frozenset({"x"}),
        prices={"x": 1},
        extra=Flag(True),
    )
    return state, [AddLine(Line(Sku("s"), 1)), Clear()]
'''

OWNER = '    owner: str = "o"\n'
QUANTITY = "    quantity: int\n"
MSG = "Msg = AddLine | Clear\n"
CHECKOUT = '@frozen\nclass Checkout:\n    """Pay."""\n\n\n'

# (id, edits, compatible, what `check` names, why the codec is not asked (cautious))
CASES: list[tuple[str, list[tuple[str, str]], bool, str, str]] = [
    (
        "state field added with a default",
        [(OWNER, OWNER + "    total: int = 0\n")],
        True,
        "field `CartState.total` added with a default",
        "",
    ),
    (
        "state field added without a default",
        [(OWNER, OWNER + "    total: int = field(kw_only=True)\n")],
        False,
        "field `CartState.total` added without a default",
        "",
    ),
    ("state field removed", [(OWNER, "")], False, "field `CartState.owner` removed", ""),
    (
        "state field renamed",
        [(OWNER, '    holder: str = "o"\n')],
        False,
        "field `CartState.owner` removed (or renamed)",
        "",
    ),
    (
        "state field retyped",
        [(OWNER, "    owner: int = 0\n")],
        False,
        "field `CartState.owner`: retyped from str to int",
        "",
    ),
    (
        "field lost its default",
        [(OWNER, "    owner: str = field(kw_only=True)\n")],
        False,
        "field `CartState.owner` lost its default",
        "cautious: only data stored before the field existed lacks it",
    ),
    (
        "field gained a default",
        [(QUANTITY, "    quantity: int = 1\n")],
        True,
        "field `Line.quantity` gained a default",
        "",
    ),
    (
        "field became keyword-only",
        [(OWNER, '    owner: str = field(default="o", kw_only=True)\n')],
        True,
        "field `CartState.owner` changed kw_only",
        "",
    ),
    (
        "fields reordered",
        [(OWNER, ""), ("    lines: tuple", OWNER + "    lines: tuple")],
        True,
        "fields of `CartState` reordered",
        "",
    ),
    (
        "enum member added",
        [('    BLUE = "blue"\n', '    BLUE = "blue"\n    GREEN = "green"\n')],
        True,
        'enum `Color`: new member GREEN = "green"',
        "",
    ),
    (
        "enum value changed",
        [('    BLUE = "blue"\n', '    BLUE = "navy"\n')],
        False,
        'enum `Color`: member BLUE changed value from "blue" to "navy"',
        "",
    ),
    (
        "enum member removed",
        [('    BLUE = "blue"\n', "")],
        False,
        'enum `Color`: member BLUE = "blue" removed',
        "",
    ),
    (
        "enum member renamed, value kept",
        [('    BLUE = "blue"\n', '    NAVY = "blue"\n')],
        True,
        'enum `Color`: member BLUE renamed NAVY with its value "blue" kept',
        "",
    ),
    (
        "Literal value added",
        [('Literal["a", "b"]', 'Literal["a", "b", "c"]')],
        True,
        'accepts new Literal value(s) "c"',
        "",
    ),
    (
        "Literal value removed",
        [('Literal["a", "b"]', 'Literal["a"]')],
        False,
        'Literal value(s) "b" removed',
        "",
    ),
    (
        "NewType base changed",
        [('Sku = NewType("Sku", str)', 'Sku = NewType("Sku", int)')],
        False,
        "field `Line.sku`: retyped from str to int",
        "",
    ),
    (
        "nested class field added with a default",
        [(QUANTITY, QUANTITY + '    note: str = ""\n')],
        True,
        "field `Line.note` added with a default",
        "",
    ),
    (
        "nested class field retyped",
        [(QUANTITY, "    quantity: str\n")],
        False,
        "field `Line.quantity`: retyped from int to str",
        "",
    ),
    (
        "tuple element retyped",
        [("lines: tuple[Line, ...]", "lines: tuple[int, ...]")],
        False,
        "retyped from examples_evo.cart.Line to int",
        "",
    ),
    (
        "tuple became a list",
        [("lines: tuple[Line, ...]", "lines: list[Line]")],
        False,
        "field `CartState.lines`: retyped from tuple[",
        "cautious: the codec happens to read a JSON array either way",
    ),
    (
        "frozenset element retyped",
        [("frozenset[str]", "frozenset[int]")],
        False,
        "retyped from str to int",
        "",
    ),
    (
        "dict value retyped",
        [("dict[str, int]", "dict[str, str]")],
        False,
        "retyped from int to str",
        "",
    ),
    (
        "field became optional",
        [(QUANTITY, "    quantity: int | None\n")],
        True,
        "field `Line.quantity`: may now be None (was int)",
        "",
    ),
    (
        "field no longer optional",
        [("    coupon: str | None = None\n", '    coupon: str = ""\n')],
        False,
        "field `CartState.coupon`: no longer allows None",
        "",
    ),
    (
        "tagged union gained a class",
        [("extra: Note | Flag ", "extra: Note | Flag | Line ")],
        True,
        "its union accepts new class(es) examples_evo.cart.Line",
        "",
    ),
    (
        "tagged union became optional",
        [("extra: Note | Flag = Note", "extra: Note | Flag | None = Note")],
        True,
        "field `CartState.extra`: may now be None",
        "",
    ),
    (
        "single class became a union",
        [("first: Note ", "first: Note | Flag ")],
        False,
        "field `CartState.first`: retyped from examples_evo.cart.Note to "
        "examples_evo.cart.Note | examples_evo.cart.Flag",
        "",
    ),
    (
        "message class added",
        [
            (MSG, "Msg = AddLine | Clear | Checkout\n"),
            ("@frozen\nclass AddLine", CHECKOUT + "@frozen\nclass AddLine"),
        ],
        True,
        "new message class `Checkout`",
        "",
    ),
    (
        "message class removed",
        [(MSG, "Msg = AddLine\n")],
        False,
        "message class `Clear` removed",
        "",
    ),
    (
        "message field added with a default",
        [("    line: Line\n", "    line: Line\n    gift: bool = False\n")],
        True,
        "field `AddLine.gift` added with a default",
        "",
    ),
    (
        "message field retyped",
        [("    line: Line\n", "    line: Note\n")],
        False,
        "field `AddLine.line`: retyped from examples_evo.cart.Line to examples_evo.cart.Note",
        "",
    ),
]

PACKAGE = "examples_evo"


def _purge() -> None:
    for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
        del sys.modules[name]


def _import(root: Path) -> Any:
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(f"{PACKAGE}.cart"), importlib.import_module(
            f"{PACKAGE}.refs"
        )
    finally:
        sys.path.remove(str(root))


@pytest.fixture
def versions(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """v1 of the package, generated and locked, and a copy to change into v2."""
    old = tmp_path / "v1" / PACKAGE
    old.mkdir(parents=True)
    (old / "__init__.py").write_text('"""Evolving."""\n')
    (old / "cart.py").write_text(CART)
    write(generate(old))
    assert CliRunner().invoke(lock, [str(old)]).exit_code == 0
    new = tmp_path / "v2" / PACKAGE
    shutil.copytree(old, new)
    yield old, new
    _purge()


def _decodes(old: Path, new: Path) -> bool:
    """Whether what v1 stored (a state and waiting mail) decodes under v2."""
    _purge()
    cart, refs = _import(old.parent)
    state, messages = cart.samples()
    codec = Codec(refs.REGISTRY)
    stored = codec.encode_state("cart", state)
    mail = [codec.encode_message("cart", m) for m in messages]
    _purge()
    _, refs = _import(new.parent)
    codec = Codec(refs.REGISTRY)
    try:
        codec.decode_state("cart", "c1", stored, 1)
        for data in mail:
            codec.decode_message("cart", data, "c1")
    except DecodeError:
        return False
    finally:
        _purge()
    return True


@pytest.mark.parametrize(
    ("edits", "compatible", "named", "cautious"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_change_is_classified_and_the_codec_agrees(
    versions: tuple[Path, Path],
    edits: list[tuple[str, str]],
    compatible: bool,
    named: str,
    cautious: str,
) -> None:
    old, new = versions
    source = new / "cart.py"
    text = source.read_text()
    for before, after in edits:
        assert before in text, before
        text = text.replace(before, after)
    source.write_text(text)
    write(generate(new))
    result = CliRunner().invoke(check, [str(new), "--no-mypy"])
    assert result.exit_code == 1, result.output
    # A class both the state and a message hold (`Line`) is named by both findings.
    findings = result.output.splitlines()[:-1]
    assert findings, result.output
    for finding in findings:
        assert named in finding
        if compatible:
            assert "changed compatibly (" in finding
        elif "its messages" in finding:
            assert "its messages changed incompatibly (" in finding
        else:
            assert "changed shape but state_version is still 1 (" in finding
    relock = CliRunner().invoke(lock, [str(new)])
    assert relock.exit_code == (0 if compatible else 1), relock.output
    if compatible:
        assert CliRunner().invoke(check, [str(new), "--no-mypy"]).exit_code == 0
    if not cautious:
        assert _decodes(old, new) is compatible
    else:
        assert _decodes(old, new), "a cautious verdict must be about data the codec reads"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (OWNER, '    owner: str = "someone"\n'),  # a default's value
        ("Sku", "Code"),  # a NewType's name
        ("Msg", "CartMsg"),  # an alias's name
    ],
    ids=["default value", "NewType renamed", "alias renamed"],
)
def test_what_decoding_does_not_see_changes_nothing(
    versions: tuple[Path, Path], before: str, after: str
) -> None:
    _, new = versions
    source = new / "cart.py"
    source.write_text(source.read_text().replace(before, after))
    write(generate(new))
    result = CliRunner().invoke(check, [str(new), "--no-mypy"])
    assert result.exit_code == 0, result.output


def test_the_issue_s_renamed_enum_value_is_caught(versions: tuple[Path, Path]) -> None:
    _, new = versions
    source = new / "cart.py"
    source.write_text(source.read_text().replace('    BLUE = "blue"\n', '    BLUE = "void"\n'))
    write(generate(new))
    result = CliRunner().invoke(check, [str(new), "--no-mypy"])
    assert result.exit_code == 1
    line = CART.splitlines().index("class Cart(Entity[str, Msg, CartState]):") + 1
    assert result.output.splitlines()[0] == (
        f"{new / 'cart.py'}:{line}: entity Cart: the state type changed shape but "
        'state_version is still 1 (enum `Color`: member BLUE changed value from "blue" to '
        '"void": stored data holding "blue" would not decode): state stored at version 1 '
        "would not decode; bump state_version to 2 and add @upgrade(from_version=1) "
        "converting the old shape, then run `pachytype lock examples_evo`"
    )
