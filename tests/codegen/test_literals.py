"""Defaults copied into ref signatures are spelled as ruff formats them; only
plain immutable literals are copied (anything else is left to attrs)."""

from __future__ import annotations

import libcst as cst
import pytest

from pachytype._generator import codegen_module

literals = codegen_module("literals")


@pytest.mark.parametrize(
    ("source", "spelled"),
    [
        ("1", "1"),
        ("0x10", "16"),
        ("-2.5", "-2.5"),
        ("'x'", '"x"'),
        ('"it\'s"', '"it\'s"'),
        ("'say \"hi\"'", "'say \"hi\"'"),
        ("b'raw'", 'b"raw"'),
        ("None", "None"),
        ("True", "True"),
        ("()", "()"),
        ("(1,)", "(1,)"),
        ("('a', 2)", '("a", 2)'),
    ],
)
def test_literals_are_spelled_as_ruff_would(source: str, spelled: str) -> None:
    assert literals.literal_code(cst.parse_expression(source)) == spelled


@pytest.mark.parametrize(
    "source", ["[]", "{}", "set()", "list", "DEFAULT_NAME", "Color.RED", "f'{x}'", "(1, [])"]
)
def test_anything_else_is_not_copied(source: str) -> None:
    assert literals.literal_code(cst.parse_expression(source)) is None
