"""Build: turn the scanned modules into the model, or into problems.

Finds every class deriving from `pachytype.Entity[Id, Msg, State]` (or
`pachytype.Worker[Request, Result]`: an entity whose state and runner side
the library provides), follows
its type arguments, expands the message type into its classes and reads
their attrs fields, and checks what would make the generated module wrong
or ambiguous. Every problem names the file and line and says the fix; all
of them are collected before failing, so one run shows every mistake.
"""

from __future__ import annotations

import keyword

import libcst as cst

# The runtime names entity types with the same function: they must agree.
from pachytype._names import snake_case  # noqa: PLC2701

from .fields import attrs_decorator, class_model
from .model import ClassModel, EntityModel, MessageModel, PackageModel
from .package import PackageSource
from .problems import GenerateError, Problem
from .resolve import Resolver, Unresolved, is_pachytype, is_typing
from .scan import ClassFacts, ModuleFacts
from .typeexpr import (
    Generic,
    Kind,
    Lit,
    Sym,
    TypeExpr,
    Union,
    canonical,
    expand,
    qualified,
    symbols,
)

# Attributes every ref already has: a message method must not hide them.
_REF_ATTRIBUTES = frozenset({"post", "entity_type", "id", "key"})


def build_model(
    package: PackageSource, modules: dict[str, ModuleFacts], generated: str = ""
) -> PackageModel:
    """The model of every entity in `modules`; raises GenerateError listing every problem.

    `generated` names the generated module, which the package's modules may
    import (`from . import refs`) and use in annotations (`refs.CounterRef`)."""
    resolver = Resolver(modules, generated)
    problems: list[Problem] = []
    entities: list[EntityModel] = []
    for name in sorted(modules):
        facts = modules[name]
        for klass in facts.classes.values():
            args = _entity_arguments(resolver, facts, klass, problems)
            if args is not None:
                entity = _entity(resolver, facts, klass, args, problems)
                if entity is not None:
                    entities.append(entity)
                continue
            worker_args = _base_arguments(resolver, facts, klass, "Worker")
            if worker_args is not None:
                worker = _worker(resolver, facts, klass, worker_args, problems)
                if worker is not None:
                    entities.append(worker)
    entities.sort(key=lambda e: (e.name, e.sym.qualname))
    _check_names(entities, problems)
    classes = _reachable_classes(resolver, entities, problems)
    if problems:
        raise GenerateError(problems)
    return PackageModel(package.name, package.command_path, tuple(entities), classes)


def _entity_arguments(
    resolver: Resolver, facts: ModuleFacts, klass: ClassFacts, problems: list[Problem]
) -> list[cst.BaseExpression] | None:
    """The type arguments of the class's `Entity[...]` base, or None if it is no entity."""
    for base in klass.node.bases:
        value = base.value
        head = value.value if isinstance(value, cst.Subscript) else value
        try:
            sym = resolver.expr(facts.name, head)
        except Unresolved:
            continue
        if isinstance(sym, Sym) and is_pachytype(sym, "EventSourced"):
            args = _slice_values(value) if isinstance(value, cst.Subscript) else []
            if len(args) != 4:
                problems.append(
                    Problem(
                        facts.path,
                        klass.line,
                        f"entity {klass.name}: EventSourced takes 4 type arguments "
                        f"(EventSourced[Id, Msg, Event, State]), got {len(args)}; write e.g. "
                        f"`class {klass.name}(EventSourced[str, {klass.name}Msg, "
                        f"{klass.name}Event, {klass.name}State])`",
                    )
                )
                return None
            return args
        if not (isinstance(sym, Sym) and is_pachytype(sym, "Entity")):
            continue
        args = _slice_values(value) if isinstance(value, cst.Subscript) else []
        if len(args) != 3:
            problems.append(
                Problem(
                    facts.path,
                    klass.line,
                    f"entity {klass.name}: Entity takes 3 type arguments "
                    f"(Entity[Id, Msg, State]), got {len(args)}; write e.g. "
                    f"`class {klass.name}(Entity[str, {klass.name}Msg, {klass.name}State])`",
                )
            )
            return None
        return args
    return None


def _base_arguments(
    resolver: Resolver, facts: ModuleFacts, klass: ClassFacts, name: str
) -> list[cst.BaseExpression] | None:
    """The type arguments of the class's base pachytype `name`, or None if it has none."""
    for base in klass.node.bases:
        value = base.value
        head = value.value if isinstance(value, cst.Subscript) else value
        try:
            sym = resolver.expr(facts.name, head)
        except Unresolved:
            continue
        if isinstance(sym, Sym) and is_pachytype(sym, name):
            return _slice_values(value) if isinstance(value, cst.Subscript) else []
    return None


_WORKER_STATE = Sym(Kind.EXTERNAL, "pachytype", "WorkerState")
_INT = Sym(Kind.BUILTIN, "builtins", "int")


def _worker(
    resolver: Resolver,
    facts: ModuleFacts,
    klass: ClassFacts,
    args: list[cst.BaseExpression],
    problems: list[Problem],
) -> EntityModel | None:
    """A worker: `class Payments(Worker[Charge, Charged | ChargeFailed])`."""

    def problem(text: str, line: int = klass.line) -> None:
        problems.append(Problem(facts.path, line, f"worker {klass.name}: {text}"))

    if len(args) != 2:
        problem(
            f"Worker takes 2 type arguments (Worker[Request, Result]), got {len(args)}; write "
            f"e.g. `class {klass.name}(Worker[Charge, Charged | ChargeFailed])`"
        )
        return None
    resolved: list[TypeExpr] = []
    for role, node in zip(("request", "result"), args, strict=True):
        try:
            resolved.append(resolver.expr(facts.name, node))
        except Unresolved as error:
            problems.append(_unresolved(facts, klass, f"the {role} type", error))
    if len(resolved) != 2:
        return None
    request_type, result_type = resolved
    ok = True
    for method in ("init", "activate"):
        if _defines(klass, method):
            problem(
                f"it defines `{method}`, but a worker's entity side is the library's (it keeps "
                f"the pending requests); define `async def perform(self, request, attempt)`"
            )
            ok = False
    perform = next(
        (
            line
            for line in klass.node.body.body
            if isinstance(line, cst.FunctionDef) and line.name.value == "perform"
        ),
        None,
    )
    if perform is None or perform.asynchronous is None:
        problem(
            "it needs `async def perform(self, request, attempt) -> Result`, which does the "
            "effect (it may do I/O) and returns the result",
            klass.line if perform is None else facts.line(perform),
        )
        ok = False
    messages = _messages(resolver, facts, klass, request_type, problems)
    if messages is None or not ok:
        return None
    for message in messages:
        if message.reply is not None and canonical(message.reply) != canonical(result_type):
            problem(
                f"request {message.name} has `reply_to: Address[{qualified(message.reply)}]` "
                f"but the worker returns `{qualified(result_type)}`; make them the same type, "
                f"so every result can be sent to reply_to"
            )
            return None
    return EntityModel(
        sym=Sym(Kind.CLASS, facts.name, klass.name),
        name=snake_case(klass.name),
        path=facts.path,
        line=klass.line,
        id_type=_INT,
        message_type=request_type,
        messages=messages,
        state_type=_WORKER_STATE,
        state_version=1,
        upgrades=(),
        result_type=result_type,
    )


def _reply_type(model: ClassModel) -> TypeExpr | None:
    """`R` of a `reply_to: Address[R]` field."""
    for f in model.fields:
        if f.name != "reply_to":
            continue
        match f.type:
            case Generic(base=Sym() as base, args=(reply,)) if is_pachytype(base, "Address"):
                return reply
    return None


def _slice_values(node: cst.Subscript) -> list[cst.BaseExpression]:
    return [e.slice.value for e in node.slice if isinstance(e.slice, cst.Index)]


def _entity(
    resolver: Resolver,
    facts: ModuleFacts,
    klass: ClassFacts,
    args: list[cst.BaseExpression],
    problems: list[Problem],
) -> EntityModel | None:
    resolved: list[TypeExpr] = []
    roles = ("id", "message", "event", "state") if len(args) == 4 else ("id", "message", "state")
    for role, node in zip(roles, args, strict=True):
        try:
            resolved.append(resolver.expr(facts.name, node))
        except Unresolved as error:
            problems.append(_unresolved(facts, klass, f"the {role} type", error))
    if len(resolved) != len(roles):
        return None
    event_type: TypeExpr | None = None
    if len(resolved) == 4:
        id_type, message_type, event_type, state_type = resolved
    else:
        id_type, message_type, state_type = resolved
    messages = _messages(resolver, facts, klass, message_type, problems)
    events: tuple[ClassModel, ...] = ()
    if event_type is not None:
        found = _events(resolver, facts, klass, event_type, problems)
        if found is None:
            return None
        events = found
    version = _state_version(facts, klass, problems)
    if messages is None or version is None:
        return None
    # Checked only once the rest is sound, so one mistake reads as one problem.
    if not _defines(klass, "init") and not _allows_none(state_type):
        problems.append(
            Problem(
                facts.path,
                klass.line,
                f"entity {klass.name}: it has no init, so an id never seen starts in state "
                f"None, but its state type does not allow None; define "
                f"`def init(self, id) -> ...` returning the first state, or add `| None` "
                f"to the state type",
            )
        )
    return EntityModel(
        sym=Sym(Kind.CLASS, facts.name, klass.name),
        name=snake_case(klass.name),
        path=facts.path,
        line=klass.line,
        id_type=id_type,
        message_type=message_type,
        messages=messages,
        state_type=state_type,
        state_version=version,
        upgrades=_upgrades(resolver, facts, klass, problems),
        event_type=event_type,
        events=events,
        upcasts=_upcasts(resolver, facts, klass, events, problems),
    )


def _events(
    resolver: Resolver,
    facts: ModuleFacts,
    klass: ClassFacts,
    event_type: TypeExpr,
    problems: list[Problem],
) -> tuple[ClassModel, ...] | None:
    """The event classes of an event-sourced entity: attrs classes of the package."""
    found: dict[str, ClassModel] = {}
    for member in dict.fromkeys(_message_classes(event_type)):
        if not isinstance(member, Sym) or member.kind is not Kind.CLASS:
            problems.append(
                Problem(
                    facts.path,
                    klass.line,
                    f"entity {klass.name}: `{qualified(member)}` is not an event class: events "
                    f"are attrs classes of the package (`@frozen class Added: ...`) or a "
                    f"union of them",
                )
            )
            return None
        if attrs_decorator(resolver, resolver.class_facts(member)) is None:
            problems.append(
                Problem(
                    facts.path,
                    klass.line,
                    f"entity {klass.name}: event class {member.name} is not an attrs class: "
                    f"decorate it with `@frozen` (`from attrs import frozen`)",
                )
            )
            return None
        if member.name in found:
            problems.append(
                Problem(
                    facts.path,
                    klass.line,
                    f"entity {klass.name}: two event classes are named {member.name} "
                    f"(stored events are tagged by class name); rename one",
                )
            )
            return None
        found[member.name] = class_model(resolver, member, problems)
    return tuple(found[name] for name in sorted(found))


def _upcasts(
    resolver: Resolver,
    facts: ModuleFacts,
    klass: ClassFacts,
    events: tuple[ClassModel, ...],
    problems: list[Problem],
) -> tuple[tuple[str, int], ...]:
    """The `(event class name, from_version)` of the class's `@upcast` functions."""
    found: list[tuple[str, int]] = []
    for line in klass.node.body.body:
        if not isinstance(line, cst.FunctionDef):
            continue
        for decorator in line.decorators:
            call = decorator.decorator
            if not isinstance(call, cst.Call):
                continue
            try:
                sym = resolver.expr(facts.name, call.func)
            except Unresolved:
                continue
            if not (isinstance(sym, Sym) and is_pachytype(sym, "upcast")):
                continue
            keywords = {a.keyword.value: a.value for a in call.args if a.keyword}
            version = keywords.get("from_version")
            event = keywords.get("event")
            name: str | None = None
            if isinstance(event, cst.Name):
                name = event.value
            elif isinstance(event, cst.Attribute):
                name = event.attr.value
            elif isinstance(event, cst.SimpleString) and isinstance(event.evaluated_value, str):
                name = event.evaluated_value
            if (
                name is None
                or not isinstance(version, cst.Integer)
                or not isinstance(version.evaluated_value, int)
            ):
                problems.append(
                    Problem(
                        facts.path,
                        facts.line(decorator),
                        f"entity {klass.name}: write @upcast(event=EventClass, "
                        f"from_version=N) with a class name and an int literal N, so the "
                        f"generator and the schema lock can read it",
                    )
                )
                continue
            if name not in {c.sym.name for c in events}:
                problems.append(
                    Problem(
                        facts.path,
                        facts.line(decorator),
                        f"entity {klass.name}: @upcast(event={name}) names no event class "
                        f"of the entity; events are {', '.join(c.sym.name for c in events)}",
                    )
                )
                continue
            found.append((name, version.evaluated_value))
    return tuple(sorted(found))


def _defines(klass: ClassFacts, method: str) -> bool:
    """Whether the class body itself defines `method` (a `def`)."""
    return any(
        isinstance(line, cst.FunctionDef) and line.name.value == method
        for line in klass.node.body.body
    )


def _allows_none(expr: TypeExpr) -> bool:
    """Whether `None` is a value of the type (`None`, `X | None`, `Any`, an alias of those)."""
    match expr:
        case Lit(code="None"):
            return True
        case Union(items=items):
            return any(_allows_none(item) for item in items)
        case Sym(kind=Kind.ALIAS | Kind.NEWTYPE, target=target) if target is not None:
            return _allows_none(target)
        case Sym(kind=Kind.EXTERNAL):
            return is_typing(expr, "Any")
        case _:
            return False


def _unresolved(facts: ModuleFacts, klass: ClassFacts, role: str, error: Unresolved) -> Problem:
    line = facts.line(error.node) if error.node in facts.positions else klass.line
    fix = f"; {error.fix}" if error.fix else ""
    return Problem(facts.path, line, f"entity {klass.name}, {role}: {error.reason}{fix}")


def _message_classes(expr: TypeExpr) -> list[TypeExpr]:
    """The members of a message type: `A | B`, an alias of it, or one class."""
    match expr:
        case Sym(kind=Kind.ALIAS, target=target) if target is not None:
            return _message_classes(target)
        case Union(items=items):
            return [m for item in items for m in _message_classes(item)]
        case _:
            return [expr]


def _messages(
    resolver: Resolver,
    facts: ModuleFacts,
    klass: ClassFacts,
    message_type: TypeExpr,
    problems: list[Problem],
) -> tuple[MessageModel, ...] | None:
    found: dict[str, MessageModel] = {}
    ok = True
    members = list(dict.fromkeys(_message_classes(message_type)))
    for member in members:
        message = _message(resolver, facts, klass, member, members, problems)
        if message is None:
            ok = False
            continue
        other = found.get(message.method)
        if other is not None:
            problems.append(
                Problem(
                    facts.path,
                    klass.line,
                    f"entity {klass.name}: message classes {other.cls.qualname} and "
                    f"{message.cls.qualname} both become the ref method "
                    f"`{message.method}`; rename one of them",
                )
            )
            ok = False
        found[message.method] = message
    if not ok:
        return None
    return tuple(found[m] for m in sorted(found))


def _message(
    resolver: Resolver,
    facts: ModuleFacts,
    klass: ClassFacts,
    member: TypeExpr,
    members: list[TypeExpr],
    problems: list[Problem],
) -> MessageModel | None:
    def problem(text: str) -> None:
        problems.append(Problem(facts.path, klass.line, f"entity {klass.name}: {text}"))

    if not isinstance(member, Sym) or member.kind is not Kind.CLASS:
        spelled = qualified(member)
        if isinstance(member, Sym) and member.kind is Kind.EXTERNAL:
            problem(
                f"message class `{spelled}` is imported from outside the package, so its "
                f"fields cannot be read; declare message classes in the package"
            )
        else:
            problem(
                f"`{spelled}` is not a message class: messages are attrs classes "
                f"(`@frozen class Ping: ...`) or a union of them (`Ping | Pong`)"
            )
        return None
    # A subclass outside the union would pass mypy (it is a `member`) and then be
    # refused at run time (messages are matched by exact class): say so now.
    message_facts = resolver.class_facts(member)
    is_attrs = attrs_decorator(resolver, message_facts) is not None
    missing = [
        s.name
        for s in resolver.subclasses(member)
        if Sym(Kind.CLASS, s.module, s.name) not in members
    ]
    if missing:
        union = " | ".join([member.name, *missing] if is_attrs else missing)
        problem(
            f"the message type `{member.name}` is a base class (of {', '.join(missing)}); "
            f"messages are a union of classes, not a base class: use `{union}`"
        )
        return None
    if not is_attrs:
        problems.append(
            Problem(
                resolver.modules[member.module].path,
                message_facts.line,
                f"message class {member.name} (of entity {klass.name}) is not an attrs "
                f"class: decorate it with `@frozen` (`from attrs import frozen`)",
            )
        )
        return None
    model = class_model(resolver, member, problems)
    method = snake_case(member.name)
    if keyword.iskeyword(method) or method in _REF_ATTRIBUTES:
        problem(
            f"message class {member.name} would become the ref method `{method}`, which "
            f"{'is a Python keyword' if keyword.iskeyword(method) else 'every ref already has'}; "
            f"rename the class"
        )
        return None
    return MessageModel(model, method, _reply_type(model))


def _state_version(facts: ModuleFacts, klass: ClassFacts, problems: list[Problem]) -> int | None:
    for line in klass.node.body.body:
        if not isinstance(line, cst.SimpleStatementLine):
            continue
        for statement in line.body:
            value = _assigned_to(statement, "state_version")
            if value is None:
                continue
            if isinstance(value, cst.Integer) and isinstance(value.evaluated_value, int):
                return value.evaluated_value
            problems.append(
                Problem(
                    facts.path,
                    facts.line(statement),
                    f"entity {klass.name}: state_version must be an int literal "
                    f"(e.g. `state_version = 2`), so the generator can read it",
                )
            )
            return None
    return 1


def _assigned_to(statement: cst.BaseSmallStatement, name: str) -> cst.BaseExpression | None:
    if isinstance(statement, cst.Assign):
        targets = [t.target for t in statement.targets]
        if any(isinstance(t, cst.Name) and t.value == name for t in targets):
            return statement.value
    if (
        isinstance(statement, cst.AnnAssign)
        and isinstance(statement.target, cst.Name)
        and statement.target.value == name
    ):
        return statement.value
    return None


def _upgrades(
    resolver: Resolver, facts: ModuleFacts, klass: ClassFacts, problems: list[Problem]
) -> tuple[int, ...]:
    found: list[int] = []
    for line in klass.node.body.body:
        if not isinstance(line, cst.FunctionDef):
            continue
        for decorator in line.decorators:
            call = decorator.decorator
            if not isinstance(call, cst.Call):
                continue
            try:
                sym = resolver.expr(facts.name, call.func)
            except Unresolved:
                continue
            if not (isinstance(sym, Sym) and is_pachytype(sym, "upgrade")):
                continue
            version = next(
                (a.value for a in call.args if a.keyword and a.keyword.value == "from_version"),
                None,
            )
            if isinstance(version, cst.Integer) and isinstance(version.evaluated_value, int):
                found.append(version.evaluated_value)
            else:
                problems.append(
                    Problem(
                        facts.path,
                        facts.line(decorator),
                        f"entity {klass.name}: write @upgrade(from_version=N) with an int "
                        f"literal N, so the generator and the schema lock can read it",
                    )
                )
    return tuple(sorted(found))


def _check_names(entities: list[EntityModel], problems: list[Problem]) -> None:
    seen: dict[str, EntityModel] = {}
    for entity in entities:
        other = seen.get(entity.name)
        if other is not None:
            problems.append(
                Problem(
                    entity.path,
                    entity.line,
                    f"entities {other.sym.qualname} and {entity.sym.qualname} are both named "
                    f"`{entity.name}` (the snake_case of the class name), which names the "
                    f"entity type and its ref factory; rename one of them",
                )
            )
        seen.setdefault(entity.name, entity)


def _reachable_classes(
    resolver: Resolver, entities: list[EntityModel], problems: list[Problem]
) -> dict[str, ClassModel]:
    found: dict[str, ClassModel] = {}
    pending: list[TypeExpr] = []
    for entity in entities:
        pending.extend([entity.state_type, entity.id_type])
        for event in entity.events:
            found[event.qualname] = event
            pending.extend(f.type for f in event.fields)
        for message in entity.messages:
            found[message.cls.qualname] = message.cls
            pending.extend(f.type for f in message.fields)
    while pending:
        for sym in symbols(expand(pending.pop())):
            if sym.kind is Kind.CLASS and sym.qualname not in found:
                model = class_model(resolver, sym, problems)
                found[sym.qualname] = model
                pending.extend(f.type for f in model.fields)
    return dict(sorted(found.items()))
