"""Python literals re-spelled the way ruff formats them, so output is format-stable.

Only plain immutable literals count (numbers, strings, bytes, booleans,
None and tuples of those): they can be copied into a generated signature as
defaults. Anything else is computed by attrs at run time.
"""

from __future__ import annotations

import libcst as cst


def literal_code(node: cst.BaseExpression) -> str | None:
    """`node` as ruff would spell it, or None if it is not a plain immutable literal."""
    match node:
        case cst.Integer() | cst.Float():
            value = node.evaluated_value
            return repr(value)
        case cst.SimpleString():
            text = node.evaluated_value
            return _bytes(text) if isinstance(text, bytes) else string_literal(text)
        case cst.Name(value="True" | "False" | "None" as name):
            return name
        case cst.UnaryOperation(operator=cst.Minus(), expression=cst.Integer() | cst.Float()):
            inner = literal_code(node.expression)
            return None if inner is None else f"-{inner}"
        case cst.Tuple(elements=elements):
            parts = [literal_code(e.value) for e in elements]
            if any(p is None for p in parts) or any(
                isinstance(e, cst.StarredElement) for e in elements
            ):
                return None
            if len(parts) == 1:
                return f"({parts[0]},)"
            return f"({', '.join(p for p in parts if p is not None)})"
        case _:
            return None


def string_literal(value: str) -> str:
    """`value` as a ruff-formatted string literal (double quotes unless that adds escapes)."""
    spelled = repr(value)
    if spelled.startswith("'") and '"' not in value:
        return '"' + spelled[1:-1].replace("\\'", "'") + '"'
    return spelled


def _bytes(value: bytes) -> str:
    spelled = repr(value)
    if spelled.startswith("b'") and b'"' not in value:
        return 'b"' + spelled[2:-1].replace("\\'", "'") + '"'
    return spelled
