"""The cattrs converter: strict JSON shapes, tagged unions, collections from
lists only, attrs classes with their hints resolved; addresses and envelopes
inside values are hooked to the `Codec` that builds the converter."""

from __future__ import annotations

import typing
from collections import abc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NewType

import attrs
from cattrs import Converter
from cattrs.gen import make_dict_structure_fn_from_attrs, make_dict_unstructure_fn_from_attrs
from cattrs.preconf.orjson import make_converter

from pachytype._address import Address, Envelope, Ref
from pachytype._hints import field_types, unresolved_names

if TYPE_CHECKING:
    from pachytype._codec.codec import Codec

Unstructure = Callable[[Any], Any]
Structure = Callable[[Any, Any], Any]


class Shape(ValueError):
    """A leaf value of the wrong JSON type (strict primitive hooks)."""

    def __init__(self, expected: str, value: object) -> None:
        self.expected = expected
        self.value = value
        super().__init__(f"expected {expected}")


def spell(tp: Any) -> str:
    """A type as people write it: `Full | Vacant`, `tuple[str, ...]`."""
    if tp is type(None):
        return "None"
    if tp is Ellipsis:
        return "..."
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, _UnionType):
        return " | ".join(spell(a) for a in args)
    if origin is not None and args:
        return f"{spell(origin)}[{', '.join(spell(a) for a in args)}]"
    if isinstance(tp, type):
        return tp.__qualname__
    return repr(tp).replace("typing.", "")


def build_converter(codec: Codec, *, detailed: bool) -> Converter:
    """The converter `codec` encodes and decodes with; a `detailed` one (cattrs'
    validation notes, slower) is built only to explain a failure."""
    converter = make_converter(detailed_validation=detailed, forbid_extra_keys=True)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(type(None), _structure_none)
    converter.register_unstructure_hook_func(_is_address, codec._unstructure_address)
    converter.register_structure_hook_factory(_is_address, codec._address_structure)
    converter.register_unstructure_hook_func(_is_envelope, codec._unstructure_envelope)
    converter.register_structure_hook_func(_is_envelope, codec._structure_envelope)
    converter.register_structure_hook_factory(_is_collection, _collection_structure)
    converter.register_structure_hook_factory(_is_int_keyed, _int_keyed_structure)
    converter.register_unstructure_hook_factory(_is_tagged_union, _tagged_unstructure)
    converter.register_structure_hook_factory(_is_tagged_union, _tagged_structure)
    converter.register_unstructure_hook_factory(attrs.has, _attrs_unstructure)
    converter.register_structure_hook_factory(attrs.has, _attrs_structure)
    return converter


def _structure_int(value: object, _type: object) -> int:
    if type(value) is not int:
        raise Shape("an int", value)
    return value


def _structure_str(value: object, _type: object) -> str:
    if type(value) is not str:
        raise Shape("a str", value)
    return value


def _structure_float(value: object, _type: object) -> float:
    if type(value) is not float and type(value) is not int:
        raise Shape("a float", value)
    return float(value)


def _structure_bool(value: object, _type: object) -> bool:
    if type(value) is not bool:
        raise Shape("a bool", value)
    return value


class Item(ValueError):
    """Item `index` of a list failed to structure (wraps the cause)."""

    def __init__(self, index: int, error: Exception) -> None:
        self.index = index
        self.error = error
        super().__init__(f"item {index}: {error}")


_COLLECTIONS: dict[Any, Callable[[Any], Any]] = {
    tuple: tuple,
    list: list,
    set: set,
    frozenset: frozenset,
    abc.Sequence: tuple,
    abc.MutableSequence: list,
    abc.Set: frozenset,
    abc.MutableSet: set,
}


def _is_collection(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin not in _COLLECTIONS:
        return False
    args = typing.get_args(tp)
    return bool(args) and args != ((),)


def _collection_structure(tp: Any, converter: Converter) -> Structure:
    """Collections from JSON lists only (a string is not a tuple of chars)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        return _fixed_tuple_structure(tp, converter)
    build = _COLLECTIONS[typing.get_origin(tp)]
    item_type = typing.get_args(tp)[0]
    item = converter.get_structure_hook(item_type)

    def structure(raw: Any, _type: Any) -> Any:
        if type(raw) is not list:
            raise Shape(f"a list of {spell(item_type)}", raw)
        try:
            return build([item(x, item_type) for x in raw])
        except Exception:
            for index, x in enumerate(raw):
                try:
                    item(x, item_type)
                except Exception as error:
                    raise Item(index, error) from error
            raise

    return structure


def _fixed_tuple_structure(tp: Any, converter: Converter) -> Structure:
    """`tuple[A, B]`: a list of exactly that many items, each of its type."""
    types_ = typing.get_args(tp)
    hooks = [converter.get_structure_hook(t) for t in types_]

    def structure(raw: Any, _type: Any) -> Any:
        if type(raw) is not list or len(raw) != len(types_):
            raise Shape(f"a list of {len(types_)} items ({spell(tp)})", raw)
        items = []
        for index, (hook, item_type, x) in enumerate(zip(hooks, types_, raw, strict=True)):
            try:
                items.append(hook(x, item_type))
            except Exception as error:
                raise Item(index, error) from error
        return tuple(items)

    return structure


def _structure_none(value: object, _type: object) -> None:
    if value is not None:
        raise Shape("null", value)


def _is_int_keyed(tp: Any) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    return origin in (dict, abc.Mapping) and len(args) == 2 and supertype(args[0]) is int


def _int_keyed_structure(tp: Any, converter: Converter) -> Structure:
    """`dict[int, V]`: JSON keys are strings, so ints travel as canonical digits."""
    value_type = typing.get_args(tp)[1]
    value = converter.get_structure_hook(value_type)

    def structure(raw: Any, _type: Any) -> Any:
        if type(raw) is not dict:
            raise Shape(f"an object of {spell(tp)}", raw)
        result = {}
        for key, item in raw.items():
            number = int(key) if type(key) is str and key.lstrip("-").isdigit() else None
            if number is None or str(number) != key:
                raise Shape("an int key (canonical digits)", key)
            result[number] = value(item, value_type)
        return result

    return structure


def ref_class_of(tp: object) -> type[Ref[Any, Any]]:
    """The class to rebuild an address as: a generated ref class (`ClientRef`) when
    the field names one, so its methods work; a plain `Ref` for `Address[M]`."""
    if isinstance(tp, type) and issubclass(tp, Ref) and tp is not Ref:
        return tp
    return Ref


def _is_address(tp: Any) -> bool:
    origin = typing.get_origin(tp) or tp
    return isinstance(origin, type) and issubclass(origin, Address)


def _is_envelope(tp: Any) -> bool:
    origin = typing.get_origin(tp) or tp
    return isinstance(origin, type) and issubclass(origin, Envelope)


def _resolved_attributes(cls: type) -> list[attrs.Attribute[Any]]:
    hints = field_types(cls)
    for name, tp in hints.items():
        missing = unresolved_names(tp)
        if missing:
            raise TypeError(
                f"field {name!r} of {cls.__module__}.{cls.__qualname__}: its type names "
                f"{', '.join(missing)}, which no module of the package defines at run "
                f"time (imported only under TYPE_CHECKING from outside the package?); "
                f"import it at run time"
            )
    return [a.evolve(type=hints[a.name]) for a in attrs.fields(cls)]


def _attrs_unstructure(cls: Any, converter: Converter) -> Unstructure:
    return make_dict_unstructure_fn_from_attrs(_resolved_attributes(cls), cls, converter)


def _attrs_structure(cls: Any, converter: Converter) -> Structure:
    return make_dict_structure_fn_from_attrs(_resolved_attributes(cls), cls, converter)


def _union_members(tp: Any) -> tuple[list[type], bool] | None:
    """The attrs classes of a union of two or more of them (and whether None is in it)."""
    if typing.get_origin(tp) not in (typing.Union, _UnionType):
        return None
    args = typing.get_args(tp)
    classes = [a for a in args if a is not type(None)]
    if len(classes) < 2 or not all(isinstance(a, type) and attrs.has(a) for a in classes):
        return None
    return classes, len(classes) != len(args)


_UnionType = type(int | str)


def _is_tagged_union(tp: Any) -> bool:
    return _union_members(tp) is not None


def _tags(tp: Any) -> tuple[dict[str, type], bool]:
    members = _union_members(tp)
    assert members is not None
    classes, optional = members
    tags = {c.__name__: c for c in classes}
    if len(tags) != len(classes):
        raise TypeError(f"{tp!r}: two classes of the union have the same name; rename one")
    return tags, optional


def _tagged_unstructure(tp: Any, converter: Converter) -> Unstructure:
    tags, _ = _tags(tp)
    table = {c: (tag, converter.get_unstructure_hook(c)) for tag, c in tags.items()}

    def unstructure(value: Any) -> Any:
        if value is None:
            return None
        tag, fn = table[type(value)]
        return [tag, fn(value)]

    return unstructure


def _tagged_structure(tp: Any, converter: Converter) -> Structure:
    tags, optional = _tags(tp)
    table = {tag: (c, converter.get_structure_hook(c)) for tag, c in tags.items()}
    expected = " | ".join(sorted(tags))

    def structure(raw: Any, _type: Any) -> Any:
        if raw is None and optional:
            return None
        if not (type(raw) is list and len(raw) == 2 and type(raw[0]) is str):
            raise Shape(f'["Class", {{fields}}] for {expected}', raw)
        found = table.get(raw[0])
        if found is None:
            raise Shape(f"one of the classes {expected}", raw[0])
        cls, fn = found
        try:
            return fn(raw[1], cls)
        except Exception as error:
            raise Item(1, error) from error

    return structure


def supertype(tp: Any) -> Any:
    """The type a NewType stands for (through any chain of them)."""
    while isinstance(tp, NewType):
        tp = tp.__supertype__
    return tp
