"""Resolve: what each name and annotation of the package refers to.

Design note. Names are followed statically through imports until they reach
a definition in the package (class, alias, NewType) or leave it (a name
imported from another distribution, kept as the user spelled its module).
Imports under `if TYPE_CHECKING:` count like any other: the generated module
imports such names itself, from where they are defined. `typing` spellings
are normalised (`Optional[X]` -> `X | None`, `List` -> `list`), so the same
type always gets the same canonical spelling. Recursive aliases are refused
(named in the error), never followed forever.
"""

from __future__ import annotations

import builtins

import libcst as cst
from attrs import frozen
from libcst.helpers import get_full_name_for_node

from .literals import literal_code
from .scan import AssignFacts, ClassFacts, ModuleFacts
from .typeexpr import NONE, Bracket, Generic, Kind, Lit, Sym, TypeExpr, Union

_BUILTINS = frozenset(dir(builtins))
_TYPING = frozenset({"typing", "typing_extensions"})
_TYPING_BUILTINS = {
    "List": "list",
    "Dict": "dict",
    "Set": "set",
    "FrozenSet": "frozenset",
    "Tuple": "tuple",
    "Type": "type",
}


class Unresolved(Exception):
    """A name or annotation the generator cannot follow; `reason` says which and why."""

    def __init__(self, reason: str, node: cst.CSTNode, fix: str = "") -> None:
        self.reason = reason
        self.node = node
        self.fix = fix
        super().__init__(f"{reason}; {fix}" if fix else reason)


@frozen
class ModuleRef:
    """A name bound to a module (`import uuid`, `from . import messages`)."""

    name: str


def is_typing(sym: Sym, *names: str) -> bool:
    """Whether `sym` is one of `typing.<names>` (or typing_extensions')."""
    return sym.kind is Kind.EXTERNAL and sym.module in _TYPING and sym.name in names


def is_pachytype(sym: Sym, name: str) -> bool:
    """Whether `sym` is pachytype's public `name` (however it was imported)."""
    return (
        sym.kind is Kind.EXTERNAL
        and (sym.module == "pachytype" or sym.module.startswith("pachytype."))
        and sym.name == name
    )


class Resolver:
    """Follows names and annotations across the modules of one package."""

    def __init__(self, modules: dict[str, ModuleFacts], generated: str = "") -> None:
        self.modules = modules
        self.generated = generated
        """The generated module's name: not scanned, but its names may be used."""
        self._internal = {generated} if generated else set()
        for name in modules:
            parts = name.split(".")
            self._internal.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        self._names: dict[tuple[str, str], Sym | ModuleRef | None] = {}
        self._resolving: set[tuple[str, str]] = set()
        self._subclasses: dict[Sym, list[ClassFacts]] | None = None

    def class_facts(self, sym: Sym) -> ClassFacts:
        """The class statement of a package class."""
        return self.modules[sym.module].classes[sym.name]

    def name(self, module: str, name: str, node: cst.CSTNode) -> Sym | ModuleRef | None:
        """What `name` means at the top level of `module` (None: nothing)."""
        key = (module, name)
        if key not in self._names:
            if key in self._resolving:
                raise Unresolved(f"`{name}` refers to itself (a recursive alias)", node)
            self._resolving.add(key)
            try:
                self._names[key] = self._lookup(self.modules[module], name, node)
            finally:
                self._resolving.discard(key)
        return self._names[key]

    def _lookup(self, facts: ModuleFacts, name: str, node: cst.CSTNode) -> Sym | ModuleRef | None:
        if name in facts.classes:
            return Sym(Kind.CLASS, facts.name, name)
        if name in facts.assigns:
            return self._assigned(facts, facts.assigns[name], node)
        binding = facts.imports.get(name)
        if binding is not None:
            if binding.attribute is None:
                return ModuleRef(binding.module)
            return self._attribute(ModuleRef(binding.module), binding.attribute, node)
        for star in facts.star_imports:
            # `from .messages import *`: only the package's modules can be read.
            if star in self.modules:
                found = self.name(star, name, node)
                if found is not None:
                    return found
        if name in _BUILTINS:
            return Sym(Kind.BUILTIN, "builtins", name)
        return None

    def _attribute(
        self, owner: ModuleRef, attribute: str, node: cst.CSTNode
    ) -> Sym | ModuleRef | None:
        submodule = f"{owner.name}.{attribute}"
        if submodule in self._internal:
            return ModuleRef(submodule)
        if owner.name in self.modules:
            found = self.name(owner.name, attribute, node)
            if found is None:
                raise Unresolved(
                    f"cannot resolve `{attribute}`: {owner.name} neither defines nor imports it",
                    node,
                    "fix the import or the spelling",
                )
            return found
        return Sym(Kind.EXTERNAL, owner.name, attribute)

    def _assigned(self, facts: ModuleFacts, assign: AssignFacts, use: cst.CSTNode) -> Sym:
        """`use` is where the name is used: problems point there, not at the definition."""
        value = assign.value
        if isinstance(value, cst.Call):
            func = self.expr(facts.name, value.func)
            if isinstance(func, Sym) and is_typing(func, "NewType") and len(value.args) == 2:
                base = self.expr(facts.name, value.args[1].value)
                return Sym(Kind.NEWTYPE, facts.name, assign.name, base)
            if isinstance(func, Sym) and is_typing(func, "TypeVar"):
                raise Unresolved(
                    f"`{assign.name}` is a TypeVar, and the generator needs concrete types",
                    use,
                    "generic entity classes are not supported: write the types themselves",
                )
            raise Unresolved(f"`{assign.name}` is not a type (it is assigned a call)", use)
        return Sym(Kind.ALIAS, facts.name, assign.name, self.expr(facts.name, value))

    def expr(self, module: str, node: cst.BaseExpression) -> TypeExpr:
        """The type expression `node`, written at the top level of `module`."""
        match node:
            case cst.Name(value="None"):
                return NONE
            case cst.Name() | cst.Attribute():
                return self._named(module, node)
            case cst.Subscript():
                return self._subscript(module, node)
            case cst.BinaryOperation(operator=cst.BitOr()):
                return _union([self.expr(module, node.left), self.expr(module, node.right)])
            case cst.SimpleString() | cst.ConcatenatedString():
                return self._forward(module, node)
            case cst.Ellipsis():
                return Lit("...")
            case cst.List(elements=elements):
                return Bracket(tuple(self.expr(module, e.value) for e in elements))
            case _:
                pass
        code = cst.Module([]).code_for_node(node)
        raise Unresolved(f"`{code}` is not a type the generator understands", node)

    def _named(self, module: str, node: cst.Name | cst.Attribute) -> Sym:
        dotted = get_full_name_for_node(node) or ""
        head, *rest = dotted.split(".")
        found = self.name(module, head, node)
        for i, part in enumerate(rest):
            if isinstance(found, ModuleRef) and found.name not in self._internal:
                # `a.b.c.X` after `import a.b.c`: all but the last name are modules.
                found = Sym(Kind.EXTERNAL, ".".join([found.name, *rest[i:-1]]), rest[-1])
                break
            if isinstance(found, ModuleRef):
                found = self._attribute(found, part, node)
            elif isinstance(found, Sym) and found.kind is Kind.EXTERNAL:
                found = Sym(Kind.EXTERNAL, found.module, f"{found.name}.{part}")
            else:
                raise Unresolved(f"cannot resolve `{dotted}`: nested names are not supported", node)
        if found is None:
            raise Unresolved(
                f"cannot resolve `{dotted}`: it is neither defined nor imported in {module}",
                node,
                "define or import it (an import under `if TYPE_CHECKING:` is enough)",
            )
        if isinstance(found, ModuleRef):
            raise Unresolved(f"`{dotted}` is a module, not a type", node)
        if is_typing(found, *_TYPING_BUILTINS):
            return Sym(Kind.BUILTIN, "builtins", _TYPING_BUILTINS[found.name])
        return found

    def _subscript(self, module: str, node: cst.Subscript) -> TypeExpr:
        base = self.expr(module, node.value)
        values: list[cst.BaseExpression] = []
        for element in node.slice:
            if not isinstance(element.slice, cst.Index):
                raise Unresolved("a slice is not a type argument", node)
            values.append(element.slice.value)
        if isinstance(base, Sym) and is_typing(base, "Literal"):
            return Generic(base, tuple(_literal(v) for v in values))
        if isinstance(base, Sym) and is_typing(base, "Annotated"):
            return self.expr(module, values[0])
        args = [self.expr(module, v) for v in values]
        if isinstance(base, Sym) and is_typing(base, "Optional") and len(args) == 1:
            return _union([args[0], NONE])
        if isinstance(base, Sym) and is_typing(base, "Union"):
            return _union(args)
        return Generic(base, tuple(args))

    def _forward(self, module: str, node: cst.SimpleString | cst.ConcatenatedString) -> TypeExpr:
        text = node.evaluated_value
        if not isinstance(text, str):
            raise Unresolved("bytes are not a type", node)
        try:
            parsed = cst.parse_expression(text.strip())
        except cst.ParserSyntaxError:
            raise Unresolved(f"the string annotation {text!r} is not valid Python", node) from None
        try:
            return self.expr(module, parsed)
        except Unresolved as error:
            # Nodes parsed from a string have no position: point at the string.
            raise Unresolved(error.reason, node, error.fix) from None

    def subclasses(self, sym: Sym) -> list[ClassFacts]:
        """Classes of the package that name `sym` as a base, in module order."""
        if self._subclasses is None:
            found: dict[Sym, list[ClassFacts]] = {}
            for facts in self.modules.values():
                for klass in facts.classes.values():
                    for base in klass.node.bases:
                        try:
                            resolved = self.expr(facts.name, base.value)
                        except Unresolved:
                            continue
                        if isinstance(resolved, Sym):
                            found.setdefault(resolved, []).append(klass)
            self._subclasses = found
        return self._subclasses.get(sym, [])


def _union(items: list[TypeExpr]) -> Union:
    flat: list[TypeExpr] = []
    for item in items:
        flat.extend(item.items if isinstance(item, Union) else [item])
    return Union(tuple(flat))


def _literal(node: cst.BaseExpression) -> Lit:
    code = literal_code(node)
    if code is None:
        raise Unresolved("Literal[...] takes literal values only", node)
    return Lit(code)
