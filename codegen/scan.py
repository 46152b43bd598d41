"""Scan: read each module of the package with libcst, never importing it.

Collects, per module, only what naming needs: the names its imports bind
(including those under `if TYPE_CHECKING:` and `try:`), its top-level
classes and its top-level assignments (aliases, NewTypes), each with its
line. Meaning (what a name refers to) is the resolver's job.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import libcst as cst
from attrs import frozen
from libcst.helpers import get_full_name_for_node
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from .package import ModuleSource, PackageSource
from .problems import GenerateError, Problem


@frozen
class Binding:
    """A name bound by an import: a whole module, or one name from a module."""

    module: str
    attribute: str | None
    line: int


@frozen(eq=False)
class ClassFacts:
    """A top-level class statement."""

    module: str
    name: str
    line: int
    node: cst.ClassDef

    @property
    def qualname(self) -> str:
        """`package.module.Name`."""
        return f"{self.module}.{self.name}"


@frozen(eq=False)
class AssignFacts:
    """A top-level `Name = value` or `Name: annotation = value`."""

    name: str
    line: int
    value: cst.BaseExpression
    annotation: cst.BaseExpression | None


@frozen(eq=False)
class ModuleFacts:
    """What one module binds at top level, with lines for messages."""

    source: ModuleSource
    imports: Mapping[str, Binding]
    classes: Mapping[str, ClassFacts]
    assigns: Mapping[str, AssignFacts]
    star_imports: tuple[str, ...]
    """Modules this one imports `*` from, in order."""
    positions: Mapping[cst.CSTNode, CodeRange]

    @property
    def name(self) -> str:
        """The module's dotted name."""
        return self.source.name

    @property
    def path(self) -> str:
        """The module's file, as the user spelled the package directory."""
        return str(self.source.path)

    def line(self, node: cst.CSTNode) -> int:
        """The line `node` starts on."""
        return self.positions[node].start.line


def scan_modules(package: PackageSource) -> dict[str, ModuleFacts]:
    """Facts of every module of `package`, by module name."""
    facts: dict[str, ModuleFacts] = {}
    problems: list[Problem] = []
    for source in package.modules:
        try:
            facts[source.name] = scan_module(source)
        except cst.ParserSyntaxError as error:
            problems.append(
                Problem(
                    str(source.path),
                    error.raw_line,
                    f"syntax error: {error.message}; fix it and run `pachytype generate` again",
                )
            )
    if problems:
        raise GenerateError(problems)
    return facts


def scan_module(source: ModuleSource) -> ModuleFacts:
    """Facts of one module (raises libcst's ParserSyntaxError on bad syntax)."""
    wrapper = MetadataWrapper(cst.parse_module(source.path.read_text(encoding="utf-8")))
    positions = wrapper.resolve(PositionProvider)
    imports: dict[str, Binding] = {}
    classes: dict[str, ClassFacts] = {}
    assigns: dict[str, AssignFacts] = {}
    stars: list[str] = []
    for statement in _top_level(wrapper.module.body):
        line = positions[statement].start.line
        if isinstance(statement, cst.ClassDef):
            name = statement.name.value
            classes.setdefault(name, ClassFacts(source.name, name, line, statement))
        elif isinstance(statement, cst.Import):
            for alias in statement.names:
                bound, module = _import_binding(alias)
                imports.setdefault(bound, Binding(module, None, line))
        elif isinstance(statement, cst.ImportFrom):
            base = _from_module(source, statement)
            if isinstance(statement.names, cst.ImportStar):
                stars.append(base)
                continue
            for alias in statement.names:
                name = get_full_name_for_node(alias.name) or ""
                imports.setdefault(_bound_name(alias, name), Binding(base, name, line))
        elif isinstance(statement, cst.Assign | cst.AnnAssign):
            assign = _assignment(statement, line)
            if assign is not None:
                assigns.setdefault(assign.name, assign)
    return ModuleFacts(source, imports, classes, assigns, tuple(stars), positions)


def _top_level(body: Sequence[cst.CSTNode]) -> Iterator[cst.CSTNode]:
    """Top-level statements, looking inside `if` and `try` blocks (not functions)."""
    for node in body:
        if isinstance(node, cst.SimpleStatementLine):
            yield from node.body
        elif isinstance(node, cst.ClassDef):
            yield node
        elif isinstance(node, cst.If):
            yield from _top_level(node.body.body)
            if node.orelse is not None:
                yield from _top_level([node.orelse])
        elif isinstance(node, cst.Else):
            yield from _top_level(node.body.body)
        elif isinstance(node, cst.Try):
            yield from _top_level(node.body.body)
            for handler in node.handlers:
                yield from _top_level(handler.body.body)
            for block in (node.orelse, node.finalbody):
                if block is not None:
                    yield from _top_level(block.body.body)


def _import_binding(alias: cst.ImportAlias) -> tuple[str, str]:
    module = get_full_name_for_node(alias.name) or ""
    if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
        return alias.asname.name.value, module
    # `import a.b.c` binds `a`, the top-level package.
    top = module.split(".")[0]
    return top, top


def _bound_name(alias: cst.ImportAlias, name: str) -> str:
    if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
        return alias.asname.name.value
    return name


def _from_module(source: ModuleSource, node: cst.ImportFrom) -> str:
    named = get_full_name_for_node(node.module) if node.module is not None else None
    level = len(node.relative)
    if level == 0:
        return named or ""
    base = source.package.split(".")
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, named] if named else base)


def _assignment(node: cst.Assign | cst.AnnAssign, line: int) -> AssignFacts | None:
    if isinstance(node, cst.AnnAssign):
        if node.value is None or not isinstance(node.target, cst.Name):
            return None
        return AssignFacts(node.target.value, line, node.value, node.annotation.annotation)
    if len(node.targets) != 1 or not isinstance(node.targets[0].target, cst.Name):
        return None
    return AssignFacts(node.targets[0].target.value, line, node.value, None)
