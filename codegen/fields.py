"""What attrs makes of a class statement: whether it is an attrs class, and
the parameters its `__init__` takes.

Design note. Follows attrs' own rules, read statically: annotated class
attributes are fields under `@define`/`@frozen`/`@mutable` (unless only
unannotated `field()`s are used), `attr.ib()`/`attrs.field()` assignments
always are; `ClassVar`s never are. Leading underscores are stripped from
parameter names unless `alias=` says otherwise; `init=False` fields are not
parameters; kw_only ones come last. Fields of attrs base classes in the
package come first, as attrs orders them. A default that is a plain
immutable literal is kept (copied into the ref's signature); anything else
(`factory=`, `Factory(...)`, a name, `[]`, an `@x.default` method) is left
for attrs to compute, so no mutable default is ever shared.
"""

from __future__ import annotations

import ast

import libcst as cst
from attrs import frozen
from libcst.helpers import get_full_name_for_node

from pachytype._schema import literal as _schema_literal  # noqa: PLC2701 (one spelling)

from .literals import literal_code
from .model import ClassModel, FieldModel
from .problems import Problem
from .resolve import Resolver, Unresolved, is_typing
from .scan import ClassFacts, ModuleFacts
from .typeexpr import Generic, Kind, Sym, TypeExpr

_ATTRS_MODULES = frozenset({"attrs", "attr"})
_DECORATORS = frozenset({"define", "frozen", "mutable", "s", "attrs", "dataclass"})
_AUTO_BY_DEFAULT = frozenset({"define", "frozen", "mutable"})
_FIELD_FUNCTIONS = frozenset({"field", "ib", "attrib"})


def attrs_decorator(resolver: Resolver, klass: ClassFacts) -> cst.Decorator | None:
    """The class's attrs decorator (`@frozen`, `@attrs.define(...)`, `@attr.s`), if any."""
    for decorator in klass.node.decorators:
        sym = _decorator_sym(resolver, klass.module, decorator.decorator)
        if sym is not None and sym.module in _ATTRS_MODULES and sym.name in _DECORATORS:
            return decorator
    return None


def class_model(resolver: Resolver, sym: Sym, problems: list[Problem]) -> ClassModel:
    """The class `sym` of the package as attrs sees it (problems are appended)."""
    klass = resolver.class_facts(sym)
    decorator = attrs_decorator(resolver, klass)
    if decorator is None:
        flavour = _enum_flavour(resolver, klass)
        if flavour is not None:
            return ClassModel(sym, False, (), _enum_members(resolver, klass, flavour, problems))
        return ClassModel(sym, False, ())
    own = _own_fields(resolver, klass, decorator, problems)
    inherited: list[FieldModel] = []
    for base in _attrs_bases(resolver, klass):
        inherited.extend(class_model(resolver, base, problems).fields)
    names = {f.name for f in own}
    merged = [f for f in inherited if f.name not in names] + own
    ordered = [f for f in merged if not f.kw_only] + [f for f in merged if f.kw_only]
    return ClassModel(sym, True, tuple(ordered))


def _decorator_sym(resolver: Resolver, module: str, node: cst.BaseExpression) -> Sym | None:
    target = node.func if isinstance(node, cst.Call) else node
    try:
        found = resolver.expr(module, target)
    except Unresolved:
        return None
    return found if isinstance(found, Sym) else None


def _attrs_bases(resolver: Resolver, klass: ClassFacts) -> list[Sym]:
    found = []
    for base in klass.node.bases:
        try:
            sym = resolver.expr(klass.module, base.value)
        except Unresolved:
            continue
        if isinstance(sym, Sym) and sym.kind is Kind.CLASS:
            found.append(sym)
    return found


def _keyword(call: cst.Call, name: str) -> cst.BaseExpression | None:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg.value
    return None


def _is_true(node: cst.BaseExpression | None) -> bool:
    return isinstance(node, cst.Name) and node.value == "True"


def _own_fields(
    resolver: Resolver, klass: ClassFacts, decorator: cst.Decorator, problems: list[Problem]
) -> list[FieldModel]:
    facts = resolver.modules[klass.module]
    options = decorator.decorator if isinstance(decorator.decorator, cst.Call) else None
    kw_only = options is not None and _is_true(_keyword(options, "kw_only"))
    statements = [
        s
        for line in klass.node.body.body
        if isinstance(line, cst.SimpleStatementLine)
        for s in line.body
        if isinstance(s, cst.AnnAssign | cst.Assign)
    ]
    auto = _auto_attribs(resolver, klass, decorator, options, statements)
    computed = _default_methods(klass)
    fields: list[FieldModel] = []
    for statement in statements:
        made = _field(resolver, facts, klass, statement, auto, kw_only, computed, problems)
        if made is not None:
            fields.append(made)
    return fields


def _auto_attribs(
    resolver: Resolver,
    klass: ClassFacts,
    decorator: cst.Decorator,
    options: cst.Call | None,
    statements: list[cst.AnnAssign | cst.Assign],
) -> bool:
    explicit = _keyword(options, "auto_attribs") if options is not None else None
    if explicit is not None:
        return _is_true(explicit)
    sym = _decorator_sym(resolver, klass.module, decorator.decorator)
    if sym is None or sym.name not in _AUTO_BY_DEFAULT:
        return False
    # attrs' guess: annotated attributes are fields unless an unannotated field() is used.
    return not any(
        isinstance(s, cst.Assign) and _field_call(resolver, klass.module, s.value) is not None
        for s in statements
    )


def _default_methods(klass: ClassFacts) -> set[str]:
    """Fields whose default an `@x.default` method computes."""
    found = set()
    for line in klass.node.body.body:
        if isinstance(line, cst.FunctionDef):
            for decorator in line.decorators:
                name = get_full_name_for_node(decorator.decorator) or ""
                owner, _, attribute = name.rpartition(".")
                if attribute == "default" and owner and "." not in owner:
                    found.add(owner)
    return found


def _field_call(
    resolver: Resolver, module: str, value: cst.BaseExpression | None
) -> cst.Call | None:
    if not isinstance(value, cst.Call):
        return None
    sym = _decorator_sym(resolver, module, value.func)
    if sym is not None and sym.module in _ATTRS_MODULES and sym.name in _FIELD_FUNCTIONS:
        return value
    return None


def _field(
    resolver: Resolver,
    facts: ModuleFacts,
    klass: ClassFacts,
    statement: cst.AnnAssign | cst.Assign,
    auto: bool,
    kw_only: bool,
    computed: set[str],
    problems: list[Problem],
) -> FieldModel | None:
    if isinstance(statement, cst.AnnAssign):
        target: cst.BaseExpression = statement.target
        annotation: cst.BaseExpression | None = statement.annotation.annotation
    else:
        if len(statement.targets) != 1:
            return None
        target, annotation = statement.targets[0].target, None
    if not isinstance(target, cst.Name):
        return None
    name = target.value
    call = _field_call(resolver, klass.module, statement.value)
    if call is None and not (auto and annotation is not None):
        return None
    type_ = _field_type(resolver, facts, (klass.name, name), annotation, call, statement, problems)
    if type_ is None or _is_classvar(type_):
        return None
    if call is not None:
        if _keyword(call, "init") is not None and not _is_true(_keyword(call, "init")):
            return None
        has_default, default = _call_default(resolver, klass.module, call)
        field_kw_only = kw_only or _is_true(_keyword(call, "kw_only"))
        alias = _keyword(call, "alias")
    else:
        has_default = statement.value is not None
        default = literal_code(statement.value) if statement.value is not None else None
        field_kw_only, alias = kw_only, None
    if name in computed:
        has_default, default = True, None
    param = name.lstrip("_")
    if isinstance(alias, cst.SimpleString) and isinstance(alias.evaluated_value, str):
        param = alias.evaluated_value
    return FieldModel(name, param, type_, has_default, default, field_kw_only)


def _field_type(
    resolver: Resolver,
    facts: ModuleFacts,
    owner: tuple[str, str],
    annotation: cst.BaseExpression | None,
    call: cst.Call | None,
    statement: cst.CSTNode,
    problems: list[Problem],
) -> TypeExpr | None:
    if annotation is None and call is not None:
        annotation = _keyword(call, "type")
    if annotation is None:
        problems.append(
            Problem(
                facts.path,
                facts.line(statement),
                f"field `{owner[1]}` of `{owner[0]}` has no type: annotate it "
                f"(`{owner[1]}: int = ...`)",
            )
        )
        return None
    try:
        return resolver.expr(facts.name, annotation)
    except Unresolved as error:
        line = facts.line(error.node) if error.node in facts.positions else facts.line(statement)
        fix = f"; {error.fix}" if error.fix else ""
        where = f"field `{owner[1]}` of `{owner[0]}`"
        problems.append(Problem(facts.path, line, f"{where}: {error.reason}{fix}"))
        return None


def _is_classvar(type_: TypeExpr) -> bool:
    head = type_.base if isinstance(type_, Generic) else type_
    return isinstance(head, Sym) and is_typing(head, "ClassVar")


def _call_default(resolver: Resolver, module: str, call: cst.Call) -> tuple[bool, str | None]:
    if _keyword(call, "factory") is not None:
        return True, None
    value = _keyword(call, "default")
    if value is None:
        return False, None
    return True, literal_code(value)


# -- enums ---------------------------------------------------------------------

_ENUM_BASES = frozenset({"Enum", "IntEnum", "StrEnum", "Flag", "IntFlag"})
# The data type each flavour converts member values to (`str(1)` -> "1").
_FLAVOUR_TYPES = {"StrEnum": "str", "IntEnum": "int", "IntFlag": "int"}
_MIXINS = {"str": str, "int": int, "float": float}


@frozen
class _Flavour:
    """What kind of enum a class is: its `enum` base and its data type, if any."""

    base: str
    mixin: str | None


def _enum_flavour(resolver: Resolver, klass: ClassFacts, depth: int = 0) -> _Flavour | None:
    """`Enum`, `StrEnum`, `Flag`... if the class is an enum (through package bases
    too), with the builtin data type mixed in (`class Color(str, Enum)`)."""
    base: str | None = None
    mixin: str | None = None
    for node in klass.node.bases:
        try:
            sym = resolver.expr(klass.module, node.value)
        except Unresolved:
            continue
        if not isinstance(sym, Sym):
            continue
        if sym.kind is Kind.BUILTIN and sym.name in _MIXINS:
            mixin = mixin or sym.name
        elif sym.kind is Kind.EXTERNAL and sym.module == "enum" and sym.name in _ENUM_BASES:
            base = base or sym.name
        elif sym.kind is Kind.CLASS and depth < 20:
            found = _enum_flavour(resolver, resolver.class_facts(sym), depth + 1)
            if found is not None:
                base, mixin = base or found.base, mixin or found.mixin
    if base is None:
        return None
    return _Flavour(base, mixin or _FLAVOUR_TYPES.get(base))


def _enum_members(
    resolver: Resolver, klass: ClassFacts, flavour: _Flavour, problems: list[Problem]
) -> tuple[tuple[str, str], ...]:
    """The members as iterating the enum gives them (Python 3.11): `NAME = literal`
    or `NAME = auto()`, converted to the enum's data type, aliases (a value seen
    before) and, for flags, members that are not a single bit left out. Stored
    data holds the values, so the lock needs them; a value the generator cannot
    compute is a problem naming the member."""
    facts = resolver.modules[klass.module]
    members: list[tuple[str, str]] = []
    values: list[object] = []
    raws: list[object] = []
    """The values as written: what `auto()` counts on from."""
    custom_auto = _defines_method(klass, "_generate_next_value_")
    for line in klass.node.body.body:
        if not isinstance(line, cst.SimpleStatementLine):
            continue
        for statement in line.body:
            target, value_node = _member_assignment(statement)
            if target is None or value_node is None or target.startswith("_"):
                continue
            raw = _enum_value(
                resolver, klass.module, value_node, target, flavour, raws, custom_auto
            )
            value = _UNKNOWN if raw is _UNKNOWN else _convert(raw, flavour)
            if value is _UNKNOWN:
                problems.append(
                    Problem(
                        facts.path,
                        facts.line(statement),
                        f"enum member `{klass.name}.{target}`: the generator cannot compute its "
                        f"value, and stored data holds enum values, so the schema lock must "
                        f'know it; write it as a literal (`{target} = "{target.lower()}"`)',
                    )
                )
                continue
            raws.append(raw)
            if value in values:
                continue  # an alias: iterating the enum skips it
            values.append(value)
            single_bit = isinstance(value, int) and value > 0 and value & (value - 1) == 0
            if flavour.base in ("Flag", "IntFlag") and not single_bit:
                continue  # 0 and combinations are not iterated over
            members.append((target, _schema_literal(value)))
    return tuple(members)


def _member_assignment(
    statement: cst.BaseSmallStatement,
) -> tuple[str | None, cst.BaseExpression | None]:
    """`NAME = value` or `NAME: type = value` in an enum body."""
    if (
        isinstance(statement, cst.Assign)
        and len(statement.targets) == 1
        and isinstance(statement.targets[0].target, cst.Name)
    ):
        return statement.targets[0].target.value, statement.value
    if isinstance(statement, cst.AnnAssign) and isinstance(statement.target, cst.Name):
        return statement.target.value, statement.value
    return None, None


def _defines_method(klass: ClassFacts, name: str) -> bool:
    return any(
        isinstance(line, cst.FunctionDef) and line.name.value == name
        for line in klass.node.body.body
    )


_UNKNOWN = object()


def _enum_value(
    resolver: Resolver,
    module: str,
    node: cst.BaseExpression,
    name: str,
    flavour: _Flavour,
    previous: list[object],
    custom_auto: bool,
) -> object:
    if isinstance(node, cst.Call) and not node.args:
        sym = _decorator_sym(resolver, module, node.func)
        if sym is not None and sym.module == "enum" and sym.name == "auto":
            # A class's own `_generate_next_value_` cannot be run statically.
            return _UNKNOWN if custom_auto else _auto(name, flavour.base, previous)
    code = literal_code(node)
    if code is None:
        return _UNKNOWN
    return ast.literal_eval(code)


def _convert(value: object, flavour: _Flavour) -> object:
    """The value as the enum's data type makes it (`class C(str, Enum): A = 1` is "1")."""
    if flavour.mixin is None:
        return value
    try:
        return _MIXINS[flavour.mixin](value)
    except (TypeError, ValueError):
        return _UNKNOWN


def _auto(name: str, base: str, previous: list[object]) -> object:
    """What `enum.auto()` gives (Python 3.11's `_generate_next_value_` of each flavour)."""
    if base == "StrEnum":
        return name.lower()
    ints = [v for v in previous if isinstance(v, int) and not isinstance(v, bool)]
    if base in ("Flag", "IntFlag"):
        return 1 << max(ints).bit_length() if ints else 1
    last = previous[-1] if previous else None
    if isinstance(last, int) and not isinstance(last, bool):
        return last + 1
    return 1 if last is None else _UNKNOWN
