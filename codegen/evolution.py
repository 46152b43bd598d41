"""Evolution: which changes of a package's shapes old stored data survives.

Design note. Stored state and waiting mail were written by older code; the
new code decodes them (`pachytype._codec`: strict JSON shapes, unknown keys
refused, a union of two or more attrs classes tagged `["Class", {...}]`,
enums by value, Literals by value). A change is *compatible* when every
value the old shape could have stored still decodes under the new one:

- compatible: a new field with a default, a field gaining a default, a new
  enum value, a new `Literal` value, `X` becoming `X | None`, a new class in
  a tagged union, a new message class, a member renamed with its value
  kept, a field becoming keyword-only or moving (decoding goes by name);
- not compatible: a removed or renamed field (stored data still has the old
  key, which is refused), a new field without a default, a lost default, a
  retyped field (including a NewType's base, a tuple, a frozenset, a dict's
  key or value, a single class becoming a tagged union), a removed or
  re-valued enum member or Literal value, a removed message class.

Anything this module cannot explain (the fingerprints differ but no rule
above names the difference) is reported as not compatible: the lock must
never be fooled into calling a change safe.

Shapes are compared on the canonical description of `pachytype._schema`
(types are canonical spellings, classes by qualified name), old from
`pachytype.lock`, new from the code.
"""

from __future__ import annotations

from collections.abc import Mapping

from attrs import frozen

from pachytype._schema import ClassSchema  # noqa: PLC2701 (shared with the runtime)


@frozen
class Change:
    """One difference between the locked shape and the code's, and whether old data survives it."""

    compatible: bool
    text: str


Classes = Mapping[str, ClassSchema]


class _Compare:
    """One comparison of old and new shapes; remembers the classes it has compared."""

    def __init__(self, old: Classes, new: Classes) -> None:
        self.old = old
        self.new = new
        self.seen: set[str] = set()
        self.changes: list[Change] = []

    def add(self, compatible: bool, text: str) -> None:
        change = Change(compatible, text)
        if change not in self.changes:
            self.changes.append(change)

    # -- types -----------------------------------------------------------------

    def type(self, old: str, new: str, at: str) -> None:
        if old == new:
            for name in _names(old):
                self.klass(name)
            return
        old_items, new_items = _union(old), _union(new)
        if sorted(old_items) == sorted(new_items):
            self.add(True, f"{at}: union members reordered ({old} -> {new})")
            for name in _names(old):
                self.klass(name)
            return
        old_plain = [i for i in old_items if i != "None"]
        new_plain = [i for i in new_items if i != "None"]
        if "None" in old_items and "None" not in new_items:
            self.add(False, f"{at}: no longer allows None (was {old}, now {new})")
            return
        if len(old_plain) == 1 and len(new_plain) == 1:
            if "None" not in old_items and "None" in new_items:
                self.add(True, f"{at}: may now be None (was {old})")
            self.single(old_plain[0], new_plain[0], at)
            return
        old_tagged, new_tagged = self.tagged(old_plain), self.tagged(new_plain)
        if old_tagged and new_tagged and set(old_plain) <= set(new_plain):
            added = sorted(set(new_plain) - set(old_plain))
            if "None" not in old_items and "None" in new_items:
                self.add(True, f"{at}: may now be None (was {old})")
            if added:
                self.add(True, f"{at}: its union accepts new class(es) {', '.join(added)}")
            for item in old_plain:
                self.klass(item)
            return
        self.add(False, f"{at}: retyped from {old} to {new}")

    def tagged(self, items: list[str]) -> bool:
        """Whether the codec tags these union members (two or more attrs classes)."""
        return len(items) >= 2 and all(
            (c := self.new.get(i) or self.old.get(i)) is not None and c.is_attrs for i in items
        )

    def single(self, old: str, new: str, at: str) -> None:
        if old == new:
            self.type(old, new, at)
            return
        old_head, old_args = _generic(old)
        new_head, new_args = _generic(new)
        if old_head == new_head == "typing.Literal":
            removed = [v for v in old_args if v not in new_args]
            added = [v for v in new_args if v not in old_args]
            if removed:
                self.add(False, f"{at}: Literal value(s) {', '.join(removed)} removed")
            if added:
                self.add(True, f"{at}: accepts new Literal value(s) {', '.join(added)}")
            return
        if old_head == new_head and len(old_args) == len(new_args) and old_args:
            for index, (a, b) in enumerate(zip(old_args, new_args, strict=True)):
                self.type(a, b, f"{at} (type argument {index + 1} of {old_head})")
            return
        self.add(False, f"{at}: retyped from {old} to {new}")

    # -- classes ---------------------------------------------------------------

    def klass(self, name: str) -> None:
        if name in self.seen or name not in self.old or name not in self.new:
            return
        self.seen.add(name)
        old, new = self.old[name], self.new[name]
        short = name.rsplit(".", 1)[-1]
        if (old.is_attrs, bool(old.members)) != (new.is_attrs, bool(new.members)):
            self.add(False, f"class `{short}` changed kind ({_kind(old)} -> {_kind(new)})")
            return
        if old.members or new.members:
            self.enum(short, old, new)
            return
        old_fields = {f.name: f for f in old.fields}
        new_fields = {f.name: f for f in new.fields}
        for field in old.fields:
            at = f"field `{short}.{field.name}`"
            now = new_fields.get(field.name)
            if now is None:
                self.add(
                    False,
                    f"{at} removed (or renamed): stored data still has it and unknown keys "
                    f"are refused",
                )
                continue
            if field.default and not now.default:
                self.add(False, f"{at} lost its default: data stored without it would not decode")
            elif now.default and not field.default:
                self.add(True, f"{at} gained a default")
            if field.kw_only != now.kw_only:
                self.add(True, f"{at} changed kw_only (decoding goes by name)")
            self.type(field.type, now.type, at)
        for field in new.fields:
            if field.name in old_fields:
                continue
            at = f"field `{short}.{field.name}`"
            if field.default:
                self.add(
                    True, f"{at} added with a default: data stored without it gets the default"
                )
            else:
                self.add(
                    False,
                    f"{at} added without a default: data stored without it would not decode; "
                    "give it a default",
                )
        old_order = [f.name for f in old.fields if f.name in new_fields]
        new_order = [f.name for f in new.fields if f.name in old_fields]
        if old_order != new_order:
            self.add(True, f"fields of `{short}` reordered (decoding goes by name)")

    def enum(self, short: str, old: ClassSchema, new: ClassSchema) -> None:
        old_values = {m.value: m.name for m in old.members}
        new_values = {m.value: m.name for m in new.members}
        new_names = {m.name: m.value for m in new.members}
        for value, name in old_values.items():
            if value in new_values:
                if new_values[value] != name:
                    self.add(
                        True,
                        f"enum `{short}`: member {name} renamed {new_values[value]} with its "
                        f"value {value} kept (stored data holds values)",
                    )
            elif name in new_names:
                self.add(
                    False,
                    f"enum `{short}`: member {name} changed value from {value} to "
                    f"{new_names[name]}: stored data holding {value} would not decode",
                )
            else:
                self.add(
                    False,
                    f"enum `{short}`: member {name} = {value} removed: stored data holding "
                    f"{value} would not decode",
                )
        old_names = {m.name for m in old.members}
        for member in new.members:
            if member.value not in old_values and member.name not in old_names:
                self.add(True, f"enum `{short}`: new member {member.name} = {member.value}")


def state_changes(old_type: str, new_type: str, old: Classes, new: Classes) -> list[Change]:
    """How the state type `old_type` (with the locked classes) became `new_type`."""
    compare = _Compare(old, new)
    compare.type(old_type, new_type, "the state type")
    return compare.changes


def message_changes(
    old_messages: tuple[str, ...], new_messages: tuple[str, ...], old: Classes, new: Classes
) -> list[Change]:
    """How the message union `old_messages` (qualified class names) became `new_messages`."""
    compare = _Compare(old, new)
    for name in new_messages:
        if name not in old_messages:
            compare.add(
                True,
                f"new message class `{_short(name)}`: mail already waiting holds none of it",
            )
    for name in old_messages:
        if name in new_messages:
            compare.klass(name)
        else:
            compare.add(False, f"message class `{_short(name)}` removed")
    return compare.changes


def event_changes(name: str, old: Classes, new: Classes) -> list[Change]:
    """How the event class `name` (qualified) changed: whether events stored in
    its locked shape still decode under the new one."""
    compare = _Compare(old, new)
    compare.klass(name)
    return compare.changes


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _kind(c: ClassSchema) -> str:
    return "attrs class" if c.is_attrs else "enum" if c.members else "plain class"


# -- canonical spellings -------------------------------------------------------


def _split(text: str, separator: str) -> list[str]:
    """`text` split on `separator` outside brackets and string literals."""
    parts: list[str] = []
    depth, quote, start, i = 0, "", 0, 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif depth == 0 and text.startswith(separator, i):
            parts.append(text[start:i].strip())
            start = i + len(separator)
            i = start
            continue
        i += 1
    parts.append(text[start:].strip())
    return parts


def _union(text: str) -> list[str]:
    return _split(text, "|")


def _generic(text: str) -> tuple[str, list[str]]:
    """`head[a, b]` -> (`head`, [`a`, `b`]); a plain name has no arguments."""
    head, bracket, rest = text.partition("[")
    if not bracket or not rest.endswith("]"):
        return text, []
    return head, _split(rest[:-1], ",")


def _names(text: str) -> list[str]:
    """The dotted names a canonical spelling mentions (string literals skipped)."""
    found: list[str] = []
    for item in _union(text):
        head, args = _generic(item)
        if head == "typing.Literal":
            continue
        if head == "pachytype.Address":
            # Stored as [entity type, id]: the message classes' shapes do not matter.
            found.append(head)
            continue
        found.append(head)
        for arg in args:
            found.extend(_names(arg))
    return found
