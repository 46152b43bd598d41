"""Lint: what `pachytype check` reads in user code beyond types.

Design note. Two rules, both read statically with libcst (user code is
never imported):

1. **Purity** of every entity's `init` and `activate` (DESIGN §1.2): no
   `await` (nor `async def`), no ecosystem calls (`.send`, `.call`,
   `.follow`, `.settle`, `.dead_letters`), no file, network, process or
   logging I/O, no clock or randomness, no `global`/`nonlocal`, no
   mutation of `self` (assignment, `del`, `setattr`, a mutating method on
   one of its attributes) or of module-level state (item assignment or a
   mutating method on a module-level name), no in-place mutation of its
   arguments (the committed state must stay as it was if `activate`
   raises). Names are followed through
   imports (`from time import time as now` is still the clock). A line
   ending in `# pachytype: allow-impure` is skipped: the escape hatch for
   a deliberate exception (a debug print, a cache the author vouches for).
2. **No private construction**: outside the generated `refs.py`, user code
   must not reach `Envelope`/`Address` through pachytype's private names
   (`pachytype._address`, `pachytype._generated`, `make_ref`,
   `make_envelope`, `_Envelope`, the `_key=` argument).

The lint is a heuristic for mistakes, not a sandbox: a determined author
can hide I/O behind a helper function; the rules catch the common slips
and point at the line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import libcst as cst
from libcst.metadata import (
    MetadataWrapper,
    PositionProvider,
    QualifiedName,
    QualifiedNameProvider,
)

from .model import PackageModel
from .package import ModuleSource
from .problems import Problem

ALLOW = "pachytype: allow-impure"
"""The comment that allows one impure line on purpose."""

_PURE_METHODS = ("init", "activate")
_ECOSYSTEM_CALLS = frozenset({"send", "call", "follow", "settle", "dead_letters"})
_MUTATORS = frozenset(
    {
        "append",
        "extend",
        "insert",
        "pop",
        "popitem",
        "remove",
        "clear",
        "update",
        "add",
        "discard",
        "setdefault",
        "sort",
        "reverse",
        "__setitem__",
        "__delitem__",
    }
)
# Qualified-name prefixes of impure calls, and what they are.
_IMPURE: tuple[tuple[str, str], ...] = (
    ("time.", "the clock"),
    ("datetime.datetime.now", "the clock"),
    ("datetime.datetime.utcnow", "the clock"),
    ("datetime.datetime.today", "the clock"),
    ("datetime.date.today", "the clock"),
    ("random.", "randomness"),
    ("secrets.", "randomness"),
    ("uuid.uuid1", "randomness"),
    ("uuid.uuid4", "randomness"),
    ("os.urandom", "randomness"),
    ("os.", "the operating system"),
    ("builtins.open", "file I/O"),
    ("builtins.print", "I/O"),
    ("builtins.input", "I/O"),
    ("io.", "file I/O"),
    ("pathlib.", "file I/O"),
    ("shutil.", "file I/O"),
    ("sqlite3.", "a database"),
    ("socket.", "network I/O"),
    ("ssl.", "network I/O"),
    ("http.", "network I/O"),
    ("urllib.", "network I/O"),
    ("requests.", "network I/O"),
    ("httpx.", "network I/O"),
    ("aiohttp.", "network I/O"),
    ("asyncpg.", "a database"),
    ("asyncio.", "asyncio"),
    ("subprocess.", "a process"),
    ("logging.", "logging I/O"),
    ("sys.stdout", "I/O"),
    ("sys.stderr", "I/O"),
)
_PRIVATE_MODULES = ("pachytype._address", "pachytype._generated")
_PRIVATE_NAMES = frozenset({"make_ref", "make_envelope", "_Envelope", "_KEY"})


def lint(model: PackageModel, modules: Sequence[ModuleSource]) -> list[Problem]:
    """Purity and private-construction problems in the package's modules
    (`modules` should not include the generated `refs.py`)."""
    entities_by_path: dict[str, list[str]] = {}
    for entity in model.entities:
        entities_by_path.setdefault(entity.path, []).append(entity.sym.name)
    found: list[Problem] = []
    for module in modules:
        path = str(module.path)
        found.extend(lint_module(module.path, entities_by_path.get(path, [])))
    return sorted(found)


def lint_module(path: Path, entity_classes: Sequence[str]) -> list[Problem]:
    """Problems in one module: purity of `entity_classes`' `init`/`activate`,
    and private construction anywhere in the module."""
    source = path.read_text(encoding="utf-8")
    wrapper = MetadataWrapper(cst.parse_module(source))
    visitor = _Module(str(path), source.splitlines(), set(entity_classes), wrapper)
    wrapper.visit(visitor)
    return visitor.problems


class _Module(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (PositionProvider, QualifiedNameProvider)

    def __init__(
        self,
        path: str,
        lines: list[str],
        entity_classes: set[str],
        wrapper: MetadataWrapper,
    ) -> None:
        super().__init__()
        self.path = path
        self.lines = lines
        self.entity_classes = entity_classes
        self.problems: list[Problem] = []
        self.module_names = _module_level_names(wrapper.module)
        self.depth = 0  # nesting of classes/functions (0: module level)
        self.entity: str | None = None
        self.method: str | None = None
        self.locals: set[str] = set()
        self.params: set[str] = set()

    # -- where we are --------------------------------------------------------

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        if self.depth == 0 and node.name.value in self.entity_classes:
            self.entity = node.name.value
        self.depth += 1

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.entity = None

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        if self.entity is not None and self.depth == 1 and node.name.value in _PURE_METHODS:
            self.method = node.name.value
            self.locals = _local_names(node)
            self.params = {p.name.value for p in node.params.params} - {"self"}
            if node.asynchronous is not None:
                self._impure(node, f"`{self.method}` is `async def`; make it a plain `def`")
        self.depth += 1

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.depth -= 1
        if self.depth == 1 and self.method == original_node.name.value:
            self.method = None

    # -- private construction (anywhere) -------------------------------------

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        module = cst.helpers.get_full_name_for_node(node.module) if node.module else None
        if module in _PRIVATE_MODULES:
            self._private(node, f"imports from `{module}`")
        elif module == "pachytype" and not isinstance(node.names, cst.ImportStar):
            for alias in node.names:
                name = cst.helpers.get_full_name_for_node(alias.name)
                if name in _PRIVATE_NAMES or (name or "").startswith("_"):
                    self._private(node, f"imports `pachytype.{name}`")

    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            name = cst.helpers.get_full_name_for_node(alias.name) or ""
            if name in _PRIVATE_MODULES:
                self._private(node, f"imports `{name}`")

    def visit_Attribute(self, node: cst.Attribute) -> None:
        if node.attr.value in _PRIVATE_NAMES:
            self._private(node, f"uses `{node.attr.value}`")

    def visit_Arg(self, node: cst.Arg) -> None:
        if node.keyword is not None and node.keyword.value == "_key":
            self._private(node, "passes `_key=`")

    # -- purity (inside init/activate) ---------------------------------------

    def visit_Await(self, node: cst.Await) -> None:
        if self.method is not None:
            self._impure(node, "awaits; activation is synchronous: return envelopes instead")

    def visit_Global(self, node: cst.Global) -> None:
        if self.method is not None:
            self._impure(node, "declares `global`: module state is not the entity's state")

    def visit_Nonlocal(self, node: cst.Nonlocal) -> None:
        if self.method is not None:
            self._impure(node, "declares `nonlocal`: keep all changes in the returned state")

    def visit_Call(self, node: cst.Call) -> None:
        if self.method is None:
            return
        func = node.func
        if isinstance(func, cst.Attribute):
            name = func.attr.value
            # `refs.phone(id).call(...)` is a ref method (a message named Call), not eco.call.
            on_ref = isinstance(func.value, cst.Call)
            if name in _ECOSYSTEM_CALLS and not on_ref and not _is_self(func.value):
                self._impure(
                    node, f"calls the ecosystem (`.{name}(...)`): return envelopes instead"
                )
                return
            if name in _MUTATORS and self._mutable_target(func.value):
                self._impure(node, f"mutates {self._spell(func.value)} (`.{name}(...)`)")
                return
        is_setattr = isinstance(func, cst.Name) and func.value == "setattr"
        if is_setattr and node.args and _is_self(node.args[0].value):
            self._impure(node, "mutates `self` (setattr)")
            return
        for qualified in self._qualified(func):
            for prefix, what in _IMPURE:
                if qualified.name == prefix or qualified.name.startswith(prefix):
                    self._impure(node, f"uses {what} (`{qualified.name}`)")
                    return

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            self._check_target(node, target.target)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._check_target(node, node.target)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self._check_target(node, node.target)

    def visit_Del(self, node: cst.Del) -> None:
        self._check_target(node, node.target)

    def _check_target(self, node: cst.CSTNode, target: cst.BaseExpression) -> None:
        if self.method is None:
            return
        if isinstance(target, cst.Tuple | cst.List):
            for element in target.elements:
                self._check_target(node, element.value)
            return
        if isinstance(target, cst.Attribute | cst.Subscript) and self._mutable_target(target.value):
            self._impure(node, f"mutates {self._spell(target.value)}")
        elif isinstance(target, cst.Attribute | cst.Subscript) and _is_self(target):
            self._impure(node, "mutates `self`")

    # -- helpers -------------------------------------------------------------

    def _mutable_target(self, node: cst.BaseExpression) -> bool:
        """`self`, `self.x...`, or a module-level name not shadowed by a local."""
        root = _root(node)
        if root is None:
            return False
        if root == "self" or root in self.params:
            return True
        return root in self.module_names and root not in self.locals

    def _spell(self, node: cst.BaseExpression) -> str:
        root = _root(node) or "?"
        if root == "self":
            return "`self`"
        if root in self.params:
            return f"its argument `{root}` in place"
        return f"module state `{root}`"

    def _qualified(self, node: cst.CSTNode) -> set[QualifiedName]:
        try:
            return set(self.get_metadata(QualifiedNameProvider, node, set()))
        except KeyError:
            return set()

    def _line(self, node: cst.CSTNode) -> int:
        position = self.get_metadata(PositionProvider, node)
        return int(position.start.line)

    def _allowed(self, line: int) -> bool:
        return 0 < line <= len(self.lines) and ALLOW in self.lines[line - 1]

    def _impure(self, node: cst.CSTNode, what: str) -> None:
        line = self._line(node)
        if self._allowed(line):
            return
        self.problems.append(
            Problem(
                self.path,
                line,
                f"{self.entity}.{self.method} is not pure: it {what}; an entity's only "
                f"effects are the envelopes it returns and its new state (add "
                f"`# {ALLOW}` to the line if you mean it)",
            )
        )

    def _private(self, node: cst.CSTNode, what: str) -> None:
        self.problems.append(
            Problem(
                self.path,
                self._line(node),
                f"{what}, a private name of pachytype: envelopes and addresses come only "
                f"from the generated refs (`refs.account(id).deposit(...)`) or "
                f"`Entity.address(id)`",
            )
        )


def _root(node: cst.BaseExpression) -> str | None:
    while isinstance(node, cst.Attribute | cst.Subscript | cst.Call):
        node = node.func if isinstance(node, cst.Call) else node.value
    return node.value if isinstance(node, cst.Name) else None


def _is_self(node: cst.BaseExpression) -> bool:
    return _root(node) == "self"


def _module_level_names(module: cst.Module) -> set[str]:
    """Names assigned at the top of the module (its mutable state, if any)."""
    names: set[str] = set()
    for statement in module.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            targets: list[cst.BaseExpression] = []
            if isinstance(small, cst.Assign):
                targets = [t.target for t in small.targets]
            elif isinstance(small, cst.AnnAssign):
                targets = [small.target]
            names.update(t.value for t in targets if isinstance(t, cst.Name))
    return names


def _local_names(function: cst.FunctionDef) -> set[str]:
    """Parameters and names assigned in the function (they shadow module names)."""
    found = {p.name.value for p in function.params.params}
    found.update(p.name.value for p in function.params.kwonly_params)
    found.update(p.name.value for p in function.params.posonly_params)

    class _Assigned(cst.CSTVisitor):
        def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
            if isinstance(node.target, cst.Name):
                found.add(node.target.value)

        def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
            if isinstance(node.target, cst.Name):
                found.add(node.target.value)

        def visit_For(self, node: cst.For) -> None:
            if isinstance(node.target, cst.Name):
                found.add(node.target.value)

        def visit_MatchAs(self, node: cst.MatchAs) -> None:
            if node.name is not None:
                found.add(node.name.value)

    function.body.visit(_Assigned())
    return found
