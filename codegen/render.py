"""Render: the model as the text of `refs.py`, through the jinja2 template.

Design note. The template only lays out lines; every name and every line
that may be long is computed here, so the output is exactly what
`ruff format` would write: a line that fits in 100 columns stays on one
line, one that does not is exploded one item per line with a trailing
comma (which ruff keeps as is). Imports are grouped and sorted the way
ruff's isort rules sort them (stdlib, third party, first party; straight
imports before `from` imports; constants, classes, then functions). Every
name is chosen deterministically; a type name that clashes with a name of
the module is imported under an alias.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import jinja2
from attrs import frozen

from .fingerprint import fingerprint
from .literals import string_literal
from .model import EntityModel, FieldModel, MessageModel, PackageModel
from .typeexpr import Kind, Sym, TypeExpr, expand, spell, symbols

LINE_LENGTH = 100
TEMPLATE = "refs.py.jinja"

_STDLIB = frozenset(sys.stdlib_module_names)
_PACHYTYPE = ("EntityType", "Envelope", "Ref", "Registry", "Request", "WorkerState")


def template_directory() -> Path:
    """Where the templates are: beside this package when installed, else the checkout's."""
    here = Path(__file__).resolve().parent
    installed = here / "templates"
    return installed if installed.is_dir() else here.parent / "templates"


def fit(indent: int, head: str, items: Iterable[str], tail: str, *, hug: bool = True) -> str:
    """`head items tail` as ruff formats it: on one line if that fits, else the
    items on one indented line if that fits and `hug` allows it, else one item
    per line with a trailing comma.

    Ruff hugs call arguments, subscripts and parameter lists of two or more,
    never a lone parameter or a tuple's items (pass `hug=False`).
    """
    items = list(items)
    pad = " " * indent
    joined = ", ".join(items)
    one = f"{pad}{head}{joined}{tail}"
    if len(one) <= LINE_LENGTH:
        return one
    middle = f"{pad}    {joined}"
    if hug and len(middle) <= LINE_LENGTH:
        return f"{pad}{head}\n{middle}\n{pad}{tail}"
    return vertical(indent, head, items, tail)


def fit_tuple(indent: int, head: str, items: list[str], tail: str) -> str:
    """A tuple display: `(a,)` or `(a, b)` on one line, else one item per line."""
    one = f"{' ' * indent}{head}{', '.join(items)}{',' if len(items) == 1 else ''}{tail}"
    return one if len(one) <= LINE_LENGTH else vertical(indent, head, items, tail)


def fit_parameters(indent: int, head: str, items: list[str], tail: str) -> str:
    """A `def` line, split as ruff splits it."""
    return fit(indent, head, items, tail, hug=len(items) > 1)


def vertical(indent: int, head: str, items: Iterable[str], tail: str) -> str:
    """One item per line, with a trailing comma (which ruff keeps as it is)."""
    pad = " " * indent
    inner = "".join(f"{pad}    {item},\n" for item in items)
    return f"{pad}{head}\n{inner}{pad}{tail}"


def module_alias(package: str, module: str) -> str:
    """The name the generated module imports `module` as at run time."""
    if module == package:
        return "_m___init__"
    if module.startswith(package + "."):
        return "_m_" + module[len(package) + 1 :].replace(".", "__")
    return "_" + module.replace(".", "_")


@frozen
class _Import:
    module: str
    name: str
    alias: str | None

    @property
    def spelled(self) -> str:
        return self.name if self.alias is None else f"{self.name} as {self.alias}"


def _name_key(name: str) -> tuple[int, str, str]:
    # ruff's order-by-type: CONSTANTS, then Classes, then functions/variables.
    kind = 0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2
    return kind, name.lower(), name


def _module_key(module: str) -> tuple[str, str]:
    return module.lower(), module


class _Sections:
    """Import statements in ruff's isort order."""

    def __init__(self, first_party: Callable[[str], bool]) -> None:
        self._first_party = first_party
        self._straight: dict[str, str] = {}
        self._from: dict[str, set[_Import]] = {}

    def straight(self, module: str, alias: str) -> None:
        self._straight[module] = alias

    def from_(self, module: str, name: str, alias: str | None = None) -> None:
        self._from.setdefault(module, set()).add(_Import(module, name, alias))

    def _section(self, module: str) -> int:
        top = module.split(".")[0]
        if top == "__future__":
            return 0
        if top in _STDLIB:
            return 1
        return 3 if self._first_party(top) else 2

    def render(self, indent: int) -> list[str]:
        """Blocks of import lines, one block per non-empty section."""
        pad = " " * indent
        sections: dict[int, list[str]] = {}
        for module in sorted(self._straight, key=_module_key):
            line = f"{pad}import {module} as {self._straight[module]}"
            sections.setdefault(self._section(module), []).append(line)
        for module in sorted(self._from, key=_module_key):
            imports = self._from[module]
            plain = sorted((i.name for i in imports if i.alias is None), key=_name_key)
            lines = sections.setdefault(self._section(module), [])
            if plain:
                line = f"{pad}from {module} import {', '.join(plain)}"
                if len(line) > LINE_LENGTH:
                    line = vertical(indent, f"from {module} import (", plain, ")")
                lines.append(line)
            aliased = sorted((i for i in imports if i.alias), key=lambda i: _name_key(i.name))
            lines.extend(f"{pad}from {module} import {i.spelled}" for i in aliased)
        return ["\n".join(sections[s]) for s in sorted(sections)]


class _Names:
    """Local names for the symbols annotations use (TYPE_CHECKING imports)."""

    def __init__(self, package: str, used: Iterable[Sym], reserved: set[str], itself: str) -> None:
        self.package = package
        wanted: dict[str, set[tuple[str, str]]] = {}
        for sym in used:
            key = self._key(sym)
            # pachytype's own names are imported at run time already, and names
            # of the generated module itself (`reply_to: refs.CounterRef`) need none.
            if key is None or key[0] == itself:
                continue
            if not (key[0] == "pachytype" and key[1] in _PACHYTYPE):
                wanted.setdefault(key[1], set()).add(key)
        self.local: dict[tuple[str, str], str] = {}
        for name, keys in wanted.items():
            for key in keys:
                clash = len(keys) > 1 or name in reserved
                self.local[key] = f"{module_alias(package, key[0])}_{name}" if clash else name

    @staticmethod
    def _key(sym: Sym) -> tuple[str, str] | None:
        if sym.kind is Kind.BUILTIN:
            return None
        return sym.module, sym.name.split(".")[0]

    def __call__(self, sym: Sym) -> str:
        key = self._key(sym)
        if key is None:
            return sym.name
        rest = sym.name[len(key[1]) :]
        return self.local.get(key, key[1]) + rest

    def imports(self, sections: _Sections) -> None:
        for (module, name), local in sorted(self.local.items()):
            sections.from_(module, name, None if local == name else local)


class _Runtime:
    """Spells types for run time, through module aliases; records the imports needed."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.modules: set[str] = set()

    def __call__(self, sym: Sym) -> str:
        if sym.kind is Kind.BUILTIN:
            return sym.name
        self.modules.add(sym.module)
        return f"{module_alias(self.package, sym.module)}.{sym.name}"

    def type(self, expr: TypeExpr) -> str:
        return spell(expand(expr), self)


def _docstring(indent: int, *candidates: str) -> str:
    """The first candidate that fits on one line as a docstring (the last one anyway)."""
    pad = " " * indent
    for text in candidates:
        line = f'{pad}"""{text}"""'
        if len(line) <= LINE_LENGTH:
            return line
    return f'{pad}"""{candidates[-1]}"""'


def _article(name: str) -> str:
    return "an" if name[:1] in "AEIOU" else "a"


@frozen
class _Method:
    name: str
    message: str
    signature: str
    body: str


@frozen
class _Entity:
    model: EntityModel
    base: str
    ref_base: str
    docstring: str
    methods: list[_Method]
    class_line: str
    factory_docstring: str
    factory_return: str
    factory_signature: str
    runtime_class: str
    runtime_messages: str
    runtime_state: str
    runtime_id: str
    runtime_events: str


def _method(
    message: MessageModel, state: str, annotate: Callable[[TypeExpr], str], runtime: _Runtime
) -> tuple[_Method, bool]:
    positional: list[str] = ["self"]
    keyword: list[str] = []
    direct: list[str] = []
    computed: list[str] = []
    for f in message.fields:
        (keyword if f.kw_only else positional).append(_parameter(f, annotate))
        # attrs strips a leading underscore from the parameter; pyright does not know,
        # so such a field goes through `_given` too, which both checkers accept.
        renamed = f.name.startswith("_") and f.param == f.name.lstrip("_")
        via_given = (f.has_default and f.default is None) or renamed
        (computed if via_given else direct).append(f"{f.param}={f.param}")
    params = positional + (["*", *keyword] if keyword else [])
    returns = (
        f"Envelope[{state}]"
        if message.reply is None
        else f"Request[{state}, {annotate(message.reply)}]"
    )
    signature = fit_parameters(4, f"def {message.method}(", params, f") -> {returns}:")
    # `_given`, not `given`: a message field (so a parameter) may be named `given`;
    # none can start with an underscore (attrs strips it from parameter names).
    args = direct + ([f"**_given({', '.join(computed)})"] if computed else [])
    constructor = runtime(message.cls.sym)
    # A message with a reply address is sent as a `Request[S, R]`: `eco.ask` reads R.
    post = "self.post" if message.reply is None else "self._request"
    body = f"        return {post}({constructor}({', '.join(args)}))"
    if len(body) > LINE_LENGTH:
        if computed and len(f"{' ' * 16}{args[-1]},") > LINE_LENGTH:
            # One argument per line and `**_given(...)` still too long: ruff splits it too.
            args[-1] = fit(16, "**_given(", computed, ")").lstrip()
        call = fit(12, f"{constructor}(", args, ")")
        body = f"        return {post}(\n{call}\n        )"
    return _Method(message.method, message.name, signature, body), bool(computed)


def _parameter(f: FieldModel, annotate: Callable[[TypeExpr], str]) -> str:
    spelled = f"{f.param}: {annotate(f.type)}"
    if not f.has_default:
        return spelled
    return f"{spelled} = {f.default if f.default is not None else 'DEFAULT'}"


def render(model: PackageModel, first_party: Callable[[str], bool], itself: str = "") -> str:
    """The text of the generated module for `model`; `itself` is that module's
    import name, if it has one (names from it are used without an import)."""
    runtime = _Runtime(model.package)
    reserved = {
        "TYPE_CHECKING",
        "Final",
        "DEFAULT",
        "_given",
        "make_ref",
        "REGISTRY",
        "_entity_types",
        "WORKER_MESSAGES",
        *_PACHYTYPE,
    }
    for e in model.entities:
        reserved.update({e.ref_class, e.name, f"_{e.ref_class}Base"})
    used = [
        sym
        for e in model.entities
        for expr in [e.id_type, e.message_type, e.state_type]
        + [f.type for m in e.messages for f in m.fields]
        for sym in symbols(expr)
    ]
    names = _Names(model.package, used, reserved, itself)

    def annotate(expr: TypeExpr) -> str:
        return spell(expr, names)

    views = [_entity_view(e, annotate, runtime) for e in model.entities]
    entities = [view for view, _ in views]
    computed = any(uses_default for _, uses_default in views)
    return _template().render(
        model=model,
        entities=entities,
        imports=_imports(model, runtime, names, first_party, computed),
        type_checking=_type_checking_imports(names, first_party),
        package=string_literal(model.package),
        fingerprint=fingerprint(model),
    )


def _entity_view(
    e: EntityModel, annotate: Callable[[TypeExpr], str], runtime: _Runtime
) -> tuple[_Entity, bool]:
    """What the template needs of one entity, and whether a method leaves a default to attrs."""
    state = annotate(e.state_type)
    methods = [_method(message, state, annotate, runtime) for message in e.messages]
    article = _article(e.sym.name)
    view = _Entity(
        model=e,
        base=f"_{e.ref_class}Base",
        ref_base=fit(4, f"_{e.ref_class}Base = Ref[", [annotate(e.message_type), state], "]"),
        docstring=_docstring(
            4,
            f"Address of {article} `{e.sym.name}` ({e.sym.module}).",
            f"Address of {article} `{e.sym.name}`.",
            "Address of an entity of this type.",
        ),
        methods=[method for method, _ in methods],
        class_line=fit(0, f"class {e.ref_class}(", [f"_{e.ref_class}Base"], "):"),
        factory_docstring=(
            _docstring(4, f"The `{e.sym.name}` worker (send it requests).", "The worker.")
            if e.is_worker
            else _docstring(4, f"The `{e.sym.name}` with this id.", "The entity with this id.")
        ),
        factory_return=fit(
            4, "return make_ref(", [e.ref_class, f'"{e.name}"', "0" if e.is_worker else "id"], ")"
        ),
        factory_signature=fit_parameters(
            0,
            f"def {e.name}(",
            [] if e.is_worker else [f"id: {annotate(e.id_type)}"],
            f") -> {e.ref_class}:",
        ),
        runtime_class=runtime(e.sym),
        runtime_messages=fit_tuple(
            12,
            "messages=(",
            [runtime(m.cls.sym) for m in e.messages]
            + (["*WORKER_MESSAGES"] if e.is_worker else []),
            "),",
        ),
        runtime_state="WorkerState" if e.is_worker else runtime.type(e.state_type),
        runtime_id=runtime.type(e.id_type),
        runtime_events=fit_tuple(12, "events=(", [runtime(c.sym) for c in e.events], "),")
        if e.events
        else "",
    )
    return view, any(uses_default for _, uses_default in methods)


def _imports(
    model: PackageModel,
    runtime: _Runtime,
    names: _Names,
    first_party: Callable[[str], bool],
    computed: bool,
) -> list[str]:
    sections = _Sections(first_party)
    sections.from_("typing", "Final")
    sections.from_("pachytype", "EntityType")
    sections.from_("pachytype", "Registry")
    if model.entities:
        sections.from_("typing", "TYPE_CHECKING")
        sections.from_("pachytype", "Envelope")
        sections.from_("pachytype", "Ref")
        sections.from_("pachytype._generated", "make_ref")
    if any(m.reply is not None for e in model.entities for m in e.messages):
        sections.from_("pachytype", "Request")
    if any(e.is_worker for e in model.entities):
        sections.from_("pachytype", "WorkerState")
        sections.from_("pachytype._generated", "WORKER_MESSAGES")
    if computed:
        sections.from_("pachytype._generated", "DEFAULT")
        sections.from_("pachytype._generated", "given", "_given")
    for module in runtime.modules:
        sections.straight(module, module_alias(model.package, module))
    return sections.render(0)


def _type_checking_imports(names: _Names, first_party: Callable[[str], bool]) -> list[str]:
    sections = _Sections(first_party)
    names.imports(sections)
    return sections.render(4)


def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_directory()),
        autoescape=False,  # Python source, not HTML
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template(TEMPLATE)
