"""Why a value did not decode: the first problem of a detailed cattrs error
tree, as a path (`$.to[1]`), what was expected and the bad value."""

from __future__ import annotations

from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)

from pachytype._codec.converter import Item, Shape
from pachytype._errors import DecodeError, UnknownEntityError


def first_problem(
    error: BaseException, path: list[str | int], raw: object
) -> tuple[str, str, object]:
    """`(path, problem, bad value)` of the first leaf of a cattrs error tree."""
    if isinstance(error, ClassValidationError):
        with_names, others = error.group_exceptions()
        for inner, name_note in with_names:
            return first_problem(inner, [*path, name_note.name], raw)
        for inner in others:
            return first_problem(inner, path, raw)
    if isinstance(error, IterableValidationError):
        with_index, others = error.group_exceptions()
        for inner, index_note in with_index:
            return first_problem(inner, [*path, index_note.index], raw)
        for inner in others:
            return first_problem(inner, path, raw)
    if isinstance(error, Item):
        return first_problem(error.error, [*path, error.index], raw)
    spelled = "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in path)
    if isinstance(error, Shape):
        return spelled, f"expected {error.expected}", error.value
    if isinstance(error, ForbiddenExtraKeysError):
        return spelled, f"unknown field(s) {', '.join(sorted(error.extra_fields))}", _at(raw, path)
    if isinstance(error, KeyError) and path:
        return spelled, "required field missing", _at(raw, path[:-1])
    if isinstance(error, DecodeError | UnknownEntityError):
        return spelled, str(error), _at(raw, path)
    return spelled, f"{type(error).__name__}: {error}", _at(raw, path)


def _at(raw: object, path: list[str | int]) -> object:
    for step in path:
        in_list = isinstance(raw, list) and isinstance(step, int) and 0 <= step < len(raw)
        if in_list or (isinstance(raw, dict) and step in raw):
            raw = raw[step]  # type: ignore[index]
        else:
            return raw
    return raw
