"""Field types of live classes, even where annotations name things only mypy sees.

Design note. Entity modules use `from __future__ import annotations`, so an
attrs field's type is a string until something resolves it, and a name
imported only under `if TYPE_CHECKING:` (to break an import cycle) is not
in the module at run time, so `typing.get_type_hints` raises `NameError`.
The generator resolves such names statically; at run time we do the same
with what is loaded:

1. the field's own module (its globals), as Python would;
2. then pachytype's public names (`Address` itself may be imported only
   for mypy), and the names the package's other modules define (an import cycle
   means the name is defined in a sibling module, already imported because
   the generated `refs.py` imports every entity module), when exactly one
   object answers to the name;
3. anything still unknown becomes an `Unresolved` placeholder class. Inside
   `Address[...]` that is harmless (an address is encoded as its entity
   type and id, whatever it accepts); anywhere else the codec refuses the
   class with an error naming the field and the name.

Each field is resolved with the globals of the class that declares it (an
inherited field with its base class's module). Annotations are code the
user wrote, not stored data: evaluating them is what `typing` does.
Results are cached per class; resolving never changes the user's classes.
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any

import attrs

from pachytype._address import Address


class Unresolved:
    """Base of the placeholders that stand for names no module defines at run time."""

    name: typing.ClassVar[str] = ""

    def __class_getitem__(cls, args: object) -> types.GenericAlias:
        # `Unknown[X]` must evaluate, so that `Address[Unknown[X]]` does too.
        return types.GenericAlias(cls, args)


def field_types(cls: type) -> dict[str, Any]:
    """`{field name: resolved type}` for the attrs class `cls`, in field order."""
    return dict(_field_types(cls))


@cache
def _field_types(cls: type) -> tuple[tuple[str, Any], ...]:
    found: list[tuple[str, Any]] = []
    for a in attrs.fields(cls):
        owner = _declaring_class(cls, a.name)
        found.append((a.name, resolve(a.type, owner.__module__)))
    return tuple(found)


def _declaring_class(cls: type, name: str) -> type:
    for klass in cls.__mro__:
        if name in inspect.get_annotations(klass):
            return klass
    return cls


def resolve(annotation: object, module: str) -> Any:
    """`annotation` (a string or a type) as a type, names looked up as the design
    note says; unknown names become `Unresolved` placeholders."""
    if not isinstance(annotation, str):
        return annotation
    namespace = dict(_module_globals(module))
    siblings: dict[str, Any] | None = None
    for _ in range(64):  # one retry per unknown name; annotations are short
        holder = types.SimpleNamespace(__annotations__={"value": annotation})
        try:
            return typing.get_type_hints(holder, namespace, None)["value"]
        except NameError as error:
            name = error.name
            if not name or name in namespace:
                raise
            if siblings is None:
                siblings = {**_pachytype_names(), **package_names(_package_of(module))}
            namespace[name] = siblings.get(name, placeholder(name))
    raise TypeError(f"cannot resolve the annotation {annotation!r} in {module}")


@cache
def placeholder(name: str) -> type[Unresolved]:
    """The placeholder class for the unknown name `name` (one per name)."""
    return type(name, (Unresolved,), {"name": name, "__module__": "<unresolved>"})


def _pachytype_names() -> dict[str, Any]:
    """pachytype's public names (`Address` imported only under TYPE_CHECKING)."""
    import pachytype  # late: the package imports this module while it loads

    return {name: getattr(pachytype, name) for name in pachytype.__all__}


def _module_globals(module: str) -> Mapping[str, Any]:
    loaded = sys.modules.get(module)
    return vars(loaded) if loaded is not None else {}


def _package_of(module: str) -> str:
    loaded = sys.modules.get(module)
    if loaded is not None and getattr(loaded, "__path__", None) is not None:
        return module
    return module.rpartition(".")[0] or module


def package_names(package: str) -> dict[str, Any]:
    """Top-level names of the package's loaded modules, when only one object
    answers to the name (a name imported elsewhere is the same object)."""
    found: dict[str, Any] = {}
    ambiguous: set[str] = set()
    prefix = package + "."
    for name, module in list(sys.modules.items()):
        if not (name == package or name.startswith(prefix)):
            continue
        for attribute, value in vars(module).items():
            if attribute.startswith("__"):
                continue
            if attribute in found and found[attribute] is not value:
                ambiguous.add(attribute)
            found.setdefault(attribute, value)
    for attribute in ambiguous:
        del found[attribute]
    return found


def unresolved_names(tp: object, *, inside_address: bool = False) -> list[str]:
    """Names of placeholders in `tp` that are not inside an `Address[...]` argument."""
    if isinstance(tp, type) and issubclass(tp, Unresolved):
        return [] if inside_address else [tp.name]
    origin = typing.get_origin(tp)
    under = inside_address or (isinstance(origin, type) and issubclass(origin, Address))
    return [n for arg in typing.get_args(tp) for n in unresolved_names(arg, inside_address=under)]
