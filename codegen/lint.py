"""Lint: what `pachytype check` reads in user code beyond types.

Design note. Three rules, all read statically with libcst (user code is
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
   imports (`from time import time as now` is still the clock), and so
   are calls: from `init`/`activate` into the package's own functions
   (same module or imported, module functions and the entity's methods),
   transitively, so `open()` or `urlopen()` two helpers deep is found and
   reported once, at its line, with the call chain that reaches it. A
   module-level object made by an impure call (`log =
   logging.getLogger(...)`, `session = requests.Session()`) is impure to
   use. A line ending in `# pachytype: allow-impure` is skipped: the
   escape hatch for a deliberate exception (a debug print, a cache the
   author vouches for); on a call line it vouches for the whole helper.
2. **Exhaustiveness** (a warning): a `match` over `activate`'s message
   that neither names every message class in an unguarded `case` nor ends
   in `case _: assert_never(msg)`; a class added later would fall through
   silently (mypy's exhaustive-match catches it only when enabled, and then
   says "Missing return statement"; `assert_never` names the class).
3. **No private construction**: outside the generated `refs.py`, user code
   must not reach `Envelope`/`Address` through pachytype's private names
   (`pachytype._address`, `pachytype._generated`, `make_ref`,
   `make_envelope`, `_Envelope`, the `_key=` argument).

The lint is a heuristic for mistakes, not a sandbox: a determined author
can hide I/O behind a callable passed around as a value or a method of an
object; the rules catch the common slips and point at the line.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst
from attrs import Factory, define, frozen
from libcst.metadata import (
    MetadataWrapper,
    PositionProvider,
    QualifiedName,
    QualifiedNameProvider,
)

from pachytype._names import snake_case as _snake  # noqa: PLC2701 (names must agree)

from .model import PackageModel
from .package import ModuleSource
from .problems import Problem

ALLOW = "pachytype: allow-impure"
"""The comment that allows one impure line on purpose."""

_PURE_METHODS = ("init", "activate")
_WORKER_PURE = ("give_up", "key")
"""A worker's methods that run inside its entity's activation: pure like `activate`
(its `perform` is where effects belong, and is left alone)."""
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
    ("tempfile.", "file I/O"),
    ("sqlite3.", "a database"),
    ("socket.", "network I/O"),
    ("ssl.", "network I/O"),
    ("http.", "network I/O"),
    ("urllib.", "network I/O"),
    ("requests.", "network I/O"),
    ("httpx.", "network I/O"),
    ("aiohttp.", "network I/O"),
    ("urllib3.", "network I/O"),
    ("smtplib.", "network I/O"),
    ("ftplib.", "network I/O"),
    ("asyncpg.", "a database"),
    ("asyncio.", "asyncio"),
    ("subprocess.", "a process"),
    ("multiprocessing.", "a process"),
    ("logging.", "logging I/O"),
    ("sys.stdout", "I/O"),
    ("sys.stderr", "I/O"),
)
_PRIVATE_MODULES = ("pachytype._address", "pachytype._generated")
_PRIVATE_NAMES = frozenset({"make_ref", "make_envelope", "_Envelope", "_KEY"})


def lint(model: PackageModel, modules: Sequence[ModuleSource]) -> list[Problem]:
    """Purity and private-construction problems in the package's modules
    (`modules` should not include the generated `refs.py`)."""
    entities_by_path: dict[str, dict[str, list[str]]] = {}
    workers = {e.sym.name for e in model.entities if e.is_worker}
    for entity in model.entities:
        messages = [m.name for m in entity.messages]
        entities_by_path.setdefault(entity.path, {})[entity.sym.name] = messages
    found: list[Problem] = []
    functions: dict[_Key, _Function] = {}
    for module in modules:
        visitor = _scan_module(module, entities_by_path.get(str(module.path), {}), workers)
        found.extend(visitor.problems)
        for function in visitor.functions:
            functions[function.key] = function
    found.extend(_purity(functions, {m.name: m for m in modules}))
    return sorted(set(found))


_Key = tuple[str, str]
"""A function of the package: (module, `name` or `Class.name`)."""


@frozen
class _Call:
    """A call that may reach another function of the package."""

    line: int
    names: tuple[str, ...]
    """What the callee may be: qualified names as libcst spells them (`.util.f`, `f`)."""
    allowed: bool


@define
class _Function:
    """One function or method of the package, as the purity check needs it."""

    key: _Key
    path: str
    entity: str | None
    """The entity class whose `init`/`activate` this is, if it is one."""
    effects: list[tuple[int, str]] = Factory(list)
    """(line, what) of each impure thing it does itself (allowed lines left out)."""
    calls: list[_Call] = Factory(list)


def _scan_module(
    module: ModuleSource, entity_classes: dict[str, list[str]], workers: set[str]
) -> _Module:
    source = module.path.read_text(encoding="utf-8")
    wrapper = MetadataWrapper(cst.parse_module(source))
    visitor = _Module(
        str(module.path), module.name, source.splitlines(), entity_classes, wrapper, workers
    )
    wrapper.visit(visitor)
    return visitor


def _purity(functions: dict[_Key, _Function], modules: dict[str, ModuleSource]) -> list[Problem]:
    """Each impure effect reachable from an `init`/`activate`, once, with its call chain."""
    found: list[Problem] = []
    reported: set[tuple[str, int, str]] = set()
    entries = sorted((f for f in functions.values() if f.entity is not None), key=_order)
    for entry in entries:
        who = f"{entry.entity}.{entry.key[1].rpartition('.')[2]}"
        chains: dict[_Key, list[tuple[_Function, int]]] = {entry.key: []}
        pending = [entry]
        while pending:
            function = pending.pop(0)
            chain = chains[function.key]
            for line, what in function.effects:
                if (function.path, line, what) in reported:
                    continue
                reported.add((function.path, line, what))
                via = "".join(
                    f"calls `{_spell_key(callee.key)}` ({caller.path}:{at}), which "
                    for caller, at, callee in _hops(entry, chain)
                )
                found.append(_impure_problem(function.path, line, who, via + what))
            for call in function.calls:
                if call.allowed:
                    continue
                callee = _resolve(call, function, functions, modules)
                if callee is None or callee.key in chains:
                    continue
                chains[callee.key] = [*chain, (callee, call.line)]
                pending.append(callee)
    return found


def _order(function: _Function) -> tuple[str, str]:
    return function.path, function.key[1]


def _hops(
    entry: _Function, chain: list[tuple[_Function, int]]
) -> list[tuple[_Function, int, _Function]]:
    """The chain as (caller, line of the call, callee) steps."""
    callers = [entry, *[callee for callee, _ in chain]]
    return [(callers[i], line, callee) for i, (callee, line) in enumerate(chain)]


def _spell_key(key: _Key) -> str:
    return f"{key[0]}.{key[1]}"


def _resolve(
    call: _Call,
    caller: _Function,
    functions: dict[_Key, _Function],
    modules: dict[str, ModuleSource],
) -> _Function | None:
    module = caller.key[0]
    for name in call.names:
        if (module, name) in functions:
            return functions[(module, name)]
        absolute = name
        if name.startswith("."):
            level = len(name) - len(name.lstrip("."))
            base = modules[module].package.split(".")
            base = base[: len(base) - (level - 1)] if level > 1 else base
            absolute = ".".join([*base, name.lstrip(".")])
        parts = absolute.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            key = (".".join(parts[:cut]), ".".join(parts[cut:]))
            if key in functions:
                return functions[key]
    return None


def _impure_problem(path: str, line: int, who: str, what: str) -> Problem:
    return Problem(
        path,
        line,
        f"{who} is not pure: it {what}; an entity's only effects are the envelopes it "
        f"returns and its new state (add `# {ALLOW}` to the line if you mean it)",
    )


class _Module(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (PositionProvider, QualifiedNameProvider)

    def __init__(
        self,
        path: str,
        module: str,
        lines: list[str],
        entity_classes: dict[str, list[str]],
        wrapper: MetadataWrapper,
        workers: set[str],
    ) -> None:
        super().__init__()
        self.workers = workers
        """Worker class names of the package (any module): their `perform` is theirs to call."""
        self.path = path
        self.module = module
        self.lines = lines
        self.entity_classes = entity_classes
        self.problems: list[Problem] = []
        self.functions: list[_Function] = []
        self.module_names = _module_level_names(wrapper.module)
        self.made_by: dict[str, str] = {}
        """Module-level names bound to what an impure call made: name -> the call."""
        self.depth = 0  # nesting of classes/functions (0: module level)
        self.klass: str | None = None
        self.function: _Function | None = None
        self.function_depth = 0
        self.locals: set[str] = set()
        self.params: set[str] = set()
        self.message_param: str | None = None
        """The name of `activate`'s message parameter, inside `activate`."""

    @property
    def entry(self) -> bool:
        """Inside an entity's `init`/`activate` (its own body, not a helper)."""
        return self.function is not None and self.function.entity is not None

    @property
    def in_entity(self) -> bool:
        """Inside a method of an entity class (where mutating `self` is impure); for
        a worker, only inside the methods that run in its activation."""
        if self.klass is None or self.klass not in self.entity_classes:
            return False
        if self.klass not in self.workers:
            return True
        method = self.function.key[1].rpartition(".")[2] if self.function else ""
        return method in _WORKER_PURE

    # -- where we are --------------------------------------------------------

    def visit_Module(self, node: cst.Module) -> None:
        for statement in node.body:
            if isinstance(statement, cst.SimpleStatementLine):
                for small in statement.body:
                    self._note_made(small)

    def _note_made(self, small: cst.BaseSmallStatement) -> None:
        if not isinstance(small, cst.Assign | cst.AnnAssign) or small.value is None:
            return
        if not isinstance(small.value, cst.Call):
            return
        targets = (
            [t.target for t in small.targets] if isinstance(small, cst.Assign) else [small.target]
        )
        for qualified in self._qualified(small.value.func):
            if _impurity(qualified.name) is not None:
                for target in targets:
                    if isinstance(target, cst.Name):
                        self.made_by[target.value] = qualified.name

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        if self.depth == 0:
            self.klass = node.name.value
        self.depth += 1

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.klass = None

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        name = node.name.value
        at_top = self.depth == 0 or (self.depth == 1 and self.klass is not None)
        if self.function is None and at_top:
            qualname = f"{self.klass}.{name}" if self.depth == 1 else name
            pure = _WORKER_PURE if self.klass in self.workers else _PURE_METHODS
            entity = self.klass if self.klass in self.entity_classes and name in pure else None
            self.function = _Function((self.module, qualname), self.path, entity)
            self.functions.append(self.function)
            self.function_depth = self.depth
            self.locals = _local_names(node)
            self.params = {p.name.value for p in node.params.params} - {"self"}
            params = [p.name.value for p in node.params.params]
            is_activate = entity is not None and name == "activate" and len(params) >= 2
            self.message_param = params[1] if is_activate else None
            if entity is not None and node.asynchronous is not None:
                self._impure(node, f"`{name}` is `async def`; make it a plain `def`")
        self.depth += 1

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.depth -= 1
        if self.function is not None and self.depth == self.function_depth:
            self.function = None

    # -- exhaustiveness (a match over activate's message) ---------------------

    def visit_Match(self, node: cst.Match) -> None:
        if self.message_param is None or self.klass is None or self.function is None:
            return
        if not (isinstance(node.subject, cst.Name) and node.subject.value == self.message_param):
            return
        if node.cases and _asserts_never(node.cases[-1]):
            return
        named: set[str] = set()
        for case in node.cases:
            if case.guard is None:
                named.update(_class_names(case.pattern))
        messages = self.entity_classes[self.klass]
        missing = [m for m in messages if m not in named]
        if not missing:
            return
        line = self._line(node)
        if self._allowed(line):
            return
        msg = self.message_param
        self.problems.append(
            Problem(
                self.path,
                line,
                f"{self.klass}.activate: this match over its messages does not name "
                f"{', '.join(f'`{m}`' for m in missing)} in a case of its own and does not "
                f"end in `assert_never`: a message class added later falls through "
                f"silently; name every class and end with `case _: assert_never({msg})` "
                f"(`from typing import assert_never`), so a missing case names itself",
                warning=True,
            )
        )

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

    # -- workers: only their runner performs ----------------------------------

    def _check_perform(self, node: cst.Call) -> None:
        """A worker's `perform` is called by its runner, never by package code:
        called directly, the request has no retries, no idempotency key kept,
        and its result reaches no one."""
        func = node.func
        if not (isinstance(func, cst.Attribute) and func.attr.value == "perform"):
            return
        target = func.value
        head = target.func if isinstance(target, cst.Call) else target
        name = cst.helpers.get_full_name_for_node(head) or ""
        worker = name.rpartition(".")[2]
        in_own = self.klass is not None and self.klass in self.workers and _is_self(target)
        if worker not in self.workers and not in_own:
            return
        line = self._line(node)
        if self._allowed(line):
            return
        shown = worker if worker in self.workers else str(self.klass)
        self.problems.append(
            Problem(
                self.path,
                line,
                f"worker {shown}: `perform` is called directly; a worker's requests go "
                f"through its entity (return `refs.{_snake(shown)}().<request>(...)` from "
                f"an activate, or `await eco.ask(...)`), which keeps the idempotency key, "
                f"retries, and answers reply_to exactly once",
            )
        )

    # -- purity (inside functions; reported only if an init/activate reaches them)

    def visit_Await(self, node: cst.Await) -> None:
        if self.function is not None:
            self._impure(node, "awaits; activation is synchronous: return envelopes instead")

    def visit_Global(self, node: cst.Global) -> None:
        if self.function is not None:
            self._impure(node, "declares `global`: module state is not the entity's state")

    def visit_Nonlocal(self, node: cst.Nonlocal) -> None:
        if self.function is not None and self.entry:
            self._impure(node, "declares `nonlocal`: keep all changes in the returned state")

    def visit_Call(self, node: cst.Call) -> None:
        self._check_perform(node)
        if self.function is None:
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
        if is_setattr and node.args and _is_self(node.args[0].value) and self.in_entity:
            self._impure(node, "mutates `self` (setattr)")
            return
        qualified = sorted(q.name for q in self._qualified(func))
        for name in qualified:
            what = _impurity(name)
            if what is not None:
                self._impure(node, f"uses {what} (`{name}`)")
                return
        root = _root(func)
        if root is not None and root in self.made_by and root not in self.locals:
            made = self.made_by[root]
            spelled = cst.Module([]).code_for_node(func)
            self._impure(node, f"uses {_impurity(made)} (`{spelled}`, made by `{made}`)")
            return
        if (
            isinstance(func, cst.Attribute)
            and isinstance(func.value, cst.Name)
            and func.value.value == "self"
            and self.klass is not None
        ):
            # `self.helper(...)`: a method of the same class.
            qualified = [f"{self.klass}.{func.attr.value}"]
        line = self._line(node)
        self.function.calls.append(_Call(line, tuple(qualified), self._allowed(line)))

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
        if self.function is None:
            return
        if isinstance(target, cst.Tuple | cst.List):
            for element in target.elements:
                self._check_target(node, element.value)
            return
        if isinstance(target, cst.Attribute | cst.Subscript) and self._mutable_target(target.value):
            self._impure(node, f"mutates {self._spell(target.value)}")
        elif (
            isinstance(target, cst.Attribute | cst.Subscript)
            and _is_self(target)
            and self.in_entity
        ):
            self._impure(node, "mutates `self`")

    # -- helpers -------------------------------------------------------------

    def _mutable_target(self, node: cst.BaseExpression) -> bool:
        """`self` (of an entity), an argument of `init`/`activate`, or a module-level
        name not shadowed by a local."""
        root = _root(node)
        if root is None:
            return False
        if root == "self":
            return self.in_entity
        if root in self.params and self.entry:
            return True
        return root in self.module_names and root not in self.locals

    def _spell(self, node: cst.BaseExpression) -> str:
        root = _root(node) or "?"
        if root == "self":
            return "`self`"
        if root in self.params and self.entry:
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
        if self.function is not None and not self._allowed(line):
            self.function.effects.append((line, what))

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


def _class_names(pattern: cst.MatchPattern) -> set[str]:
    """The classes a case pattern names at its top (`A()`, `A() | B()`, `A() as a`)."""
    match pattern:
        case cst.MatchClass(cls=cls):
            spelled = cst.helpers.get_full_name_for_node(cls) or ""
            return {spelled.rpartition(".")[2]}
        case cst.MatchOr(patterns=elements):
            return {n for element in elements for n in _class_names(element.pattern)}
        case cst.MatchAs(pattern=inner) if inner is not None:
            return _class_names(inner)
        case _:
            return set()


def _asserts_never(case: cst.MatchCase) -> bool:
    """Whether the case catches everything and its body calls `assert_never`."""
    pattern = case.pattern
    if not (isinstance(pattern, cst.MatchAs) and pattern.pattern is None and case.guard is None):
        return False
    found = False

    class _Finder(cst.CSTVisitor):
        def visit_Call(self, node: cst.Call) -> None:
            nonlocal found
            name = cst.helpers.get_full_name_for_node(node.func) or ""
            found = found or name.rpartition(".")[2] == "assert_never"

    case.body.visit(_Finder())
    return found


def _impurity(name: str) -> str | None:
    """What calling the qualified name `name` does, if it is impure."""
    for prefix, what in _IMPURE:
        if name == prefix or name.startswith(prefix):
            return what
    return None


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
