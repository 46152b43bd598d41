"""The schema lock: `pachytype.lock`, the shapes a package's stored data may have.

Design note. Stored state outlives code: state written at `state_version`
N must still be readable after every deploy, and mail waits in mailboxes
across deploys too. The lock records, per entity, the structural
fingerprint of its state type at every `state_version` it has had, the
fingerprint and classes of its message union, and the shape of every class
they are made of (fields with their types and whether they have a default,
enum members with their values): what decoding depends on. Users commit
it; `pachytype check` compares the code with it, and `codegen.evolution`
says whether each difference is one old data survives:

- a compatible change (a field added with a default, a new enum or Literal
  value, a new message class...) needs no ceremony: `check` says why it is
  fine and asks for `pachytype lock`, which records it;
- the state's shape changed incompatibly but `state_version` did not:
  stored state of that version would no longer decode; bump the version
  and add an upgrader (`lock` refuses);
- the messages changed incompatibly (a removed class, a retyped field):
  waiting mail would no longer decode; `check` says how to drain it first
  (`lock` refuses until forced);
- `state_version` rose without `@upgrade` functions reaching it from the
  oldest version the lock knows; it went down; an entity or a version is
  not locked yet; a locked entity disappeared.
- Event-sourced entities: events are forever, so each event class's shape
  is locked per version (1 + its `@upcast` functions). A compatible change
  needs only `lock`; an incompatible one with the same version is refused
  until an `@upcast(event=C, from_version=v)` converts the stored form
  (which raises the version); a removed event class, a version that went
  down, and an entity that switched between state-stored and event-sourced
  (its stored data is of the other kind) are refused too.

`pachytype lock` writes the current shapes and keeps the older versions'
fingerprint lines (the history is what makes the chain check possible).

The file is plain text, one fact per line, so diffs read well:

    entity account examples.bank.account.Account
      messages 5d41...
      message examples.bank.account.Deposit
      state 1 7c21...
      state 2 9a0b... examples.bank.account.AccountState
      event examples.cart.Added 1 3f2a...

    class examples.bank.account.AccountState attrs
      field balance: int = ...

Fingerprints come from `pachytype._schema` over the generator's static
model, the same numbers the runtime computes from live classes. Format 1
files (fingerprints only) are still read; their changes cannot be
classified, so any change of shape counts as incompatible until they are
rewritten by `pachytype lock`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from attrs import evolve, field, frozen

from pachytype import _schema  # noqa: PLC2701 (shared with the runtime)

from .evolution import Change, event_changes, message_changes, state_changes
from .fingerprint import schema as schema_of
from .model import EntityModel, PackageModel
from .problems import Problem

LOCK_NAME = "pachytype.lock"
FORMAT = 2


@frozen
class LockedEntity:
    """What the lock knows of one entity: its class, message union and state shapes."""

    name: str
    cls: str
    messages: str
    states: Mapping[int, str]
    """`state_version -> state fingerprint`."""
    line: int = 0
    """Where the entity's block starts in the file (0: not read from a file)."""
    message_classes: tuple[str, ...] = ()
    """Qualified names of the message classes, sorted (empty in a format 1 file)."""
    state_type: str = ""
    """The canonical state type of the newest version ("" in a format 1 file)."""
    id_type: str = ""
    """The canonical id type ("" in a format 1 file)."""
    id: str = ""
    """The fingerprint of the id type and the classes it reaches ("" in format 1)."""
    events: Mapping[str, Mapping[int, str]] = field(factory=dict)
    """An event-sourced entity's event classes: `qualified name -> {version ->
    fingerprint}` (empty for a state-stored entity)."""


@frozen
class Lock:
    """The contents of `pachytype.lock`."""

    package: str
    entities: Mapping[str, LockedEntity]
    classes: Mapping[str, _schema.ClassSchema] = field(factory=dict)
    """The shape of every class the states and messages are made of (newest versions)."""
    format: int = FORMAT


class LockError(Exception):
    """`pachytype.lock` cannot be read; `problem` says where and why."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


def lock_path(directory: Path) -> Path:
    """Where the package's lock lives: beside its `__init__.py`."""
    return directory / LOCK_NAME


def current(model: PackageModel, lock_format: int = FORMAT) -> Lock:
    """The lock the code in `model` implies (only its current state versions);
    `lock_format=1` gives the fingerprints a format 1 file would hold."""
    schema = schema_of(model)
    entities = {}
    roots: list[str] = []
    for entity in schema.entities:
        state = _schema.state_fingerprint(schema, entity, lock_format)
        entities[entity.name] = LockedEntity(
            name=entity.name,
            cls=entity.cls,
            messages=_schema.messages_fingerprint(schema, entity, lock_format),
            states={entity.state_version: state},
            message_classes=tuple(sorted(entity.messages)),
            state_type=entity.state,
            id_type=entity.id,
            id=_schema.id_fingerprint(schema, entity),
            events={
                name: {version: _schema.event_fingerprint(schema, name)}
                for name, version in entity.events
            },
        )
        roots += [entity.state, *entity.messages, *(name for name, _ in entity.events)]
    classes = {name: schema.classes[name] for name in _schema.reachable(schema, roots)}
    return Lock(model.package, entities, classes, lock_format)


def merged(model: PackageModel, previous: Lock | None) -> Lock:
    """The lock to write: the code's shapes, older versions' fingerprints kept from `previous`."""
    now = current(model)
    if previous is None:
        return now
    entities = {}
    for name, entity in now.entities.items():
        old = previous.entities.get(name)
        states = dict(old.states) if old is not None else {}
        states.update(entity.states)
        events: dict[str, dict[int, str]] = {}
        for event, versions in entity.events.items():
            kept = dict(old.events.get(event, {})) if old is not None else {}
            kept.update(versions)
            events[event] = dict(sorted(kept.items()))
        entities[name] = evolve(entity, states=dict(sorted(states.items())), events=events, line=0)
    return Lock(now.package, entities, now.classes)


# -- the file ------------------------------------------------------------------


def render(lock: Lock, command_path: str) -> str:
    """The text of `pachytype.lock`."""
    lines = [
        f"# Schema lock of {lock.package}: the shapes of its stored data, per state_version.",
        f"# Written by `pachytype lock {command_path}`; commit it. `pachytype check` compares",
        "# the code with it. Do not edit by hand.",
        f"format {FORMAT}",
        f"package {lock.package}",
    ]
    for name in sorted(lock.entities):
        entity = lock.entities[name]
        lines += ["", f"entity {entity.name} {entity.cls}"]
        lines += [f"  id {entity.id} {entity.id_type}"] if entity.id else []
        lines += [f"  messages {entity.messages}"]
        lines += [f"  message {m}" for m in entity.message_classes]
        newest = max(entity.states, default=0)
        for version, fp in sorted(entity.states.items()):
            typed = version == newest and entity.state_type
            lines.append(
                f"  state {version} {fp} {entity.state_type}"
                if typed
                else f"  state {version} {fp}"
            )
        for event, versions in sorted(entity.events.items()):
            lines += [f"  event {event} {version} {fp}" for version, fp in versions.items()]
    for name, c in sorted(lock.classes.items()):
        kind = "attrs" if c.is_attrs else "enum" if c.members else "class"
        lines += ["", f"class {name} {kind}"]
        for f in c.fields:
            word = "kw_only" if f.kw_only else "field"
            lines.append(f"  {word} {f.name}: {f.type}{' = ...' if f.default else ''}")
        lines += [f"  member {m.name} = {m.value}" for m in c.members]
    return "\n".join(lines) + "\n"


_FIELD = re.compile(r"(field|kw_only) (\w+): (.+?)( = \.\.\.)?")
_MEMBER = re.compile(r"member (\w+) = (.+)")
_STATE = re.compile(r"state (\d+) (\w+)(?: (.+))?")
_ID = re.compile(r"id (\w+) (.+)")


def parse(text: str, path: str) -> Lock:
    """Read a lock file (raises `LockError` naming the line)."""
    package = ""
    lock_format = FORMAT
    entities: dict[str, LockedEntity] = {}
    classes: dict[str, _schema.ClassSchema] = {}
    entity: LockedEntity | None = None
    klass: _schema.ClassSchema | None = None

    def bad(number: int, what: str) -> LockError:
        return LockError(
            Problem(
                path,
                number,
                f"{what}; this file is written by `pachytype lock`: restore it from version "
                f"control or run `pachytype lock` again",
            )
        )

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if klass is not None and (found := _FIELD.fullmatch(line)):
            word, name, type_, default = found.groups()
            made = _schema.FieldSchema(name, type_, word == "kw_only", default is not None)
            klass = classes[klass.name] = evolve(klass, fields=(*klass.fields, made))
            continue
        if klass is not None and (found := _MEMBER.fullmatch(line)):
            member = _schema.MemberSchema(*found.groups())
            klass = classes[klass.name] = evolve(klass, members=(*klass.members, member))
            continue
        if entity is not None and klass is None and (found := _STATE.fullmatch(line)):
            version, fp, type_ = found.groups()
            states = {**entity.states, int(version): fp}
            entity = entities[entity.name] = evolve(
                entity, states=states, state_type=type_ or entity.state_type
            )
            continue
        if entity is not None and klass is None and (found := _ID.fullmatch(line)):
            fp, type_ = found.groups()
            entity = entities[entity.name] = evolve(entity, id=fp, id_type=type_)
            continue
        words = line.split()
        match words:
            case ["format", version]:
                if version not in ("1", str(FORMAT)):
                    raise bad(
                        number, f"unknown lock format {version!r} (this pachytype reads 1 and 2)"
                    )
                lock_format = int(version)
            case ["package", name]:
                package = name
            case ["entity", name, cls]:
                entity, klass = LockedEntity(name, cls, "", {}, number), None
                entities[name] = entity
            case ["messages", fp] if entity is not None and klass is None:
                entity = entities[entity.name] = evolve(entity, messages=fp)
            case ["event", cls, version, fp] if entity is not None and klass is None:
                kept = {**entity.events.get(cls, {}), int(version): fp}
                events = {**entity.events, cls: kept}
                entity = entities[entity.name] = evolve(entity, events=events)
            case ["message", cls] if entity is not None and klass is None:
                names = tuple(sorted((*entity.message_classes, cls)))
                entity = entities[entity.name] = evolve(entity, message_classes=names)
            case ["class", name, ("attrs" | "enum" | "class") as kind]:
                entity, klass = None, _schema.ClassSchema(name, kind == "attrs", ())
                classes[name] = klass
            case _:
                raise bad(number, f"cannot read {line!r}")
    return Lock(package, entities, classes, lock_format)


def read(directory: Path) -> Lock | None:
    """The package's lock, or None if it has none."""
    path = lock_path(directory)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return parse(text, str(path))


# -- comparing code and lock ---------------------------------------------------


def problems(model: PackageModel, lock: Lock | None, path: str) -> list[Problem]:
    """Every way the code in `model` disagrees with `lock` (read from `path`)."""
    return [problem for problem, _ in _findings(model, lock, path)]


def refusals(model: PackageModel, lock: Lock | None, path: str) -> list[Problem]:
    """The problems `pachytype lock` will not paper over: a locked version whose
    shape changed, a missing upgrade chain, a version that went down."""
    return [problem for problem, refused in _findings(model, lock, path) if refused]


_Finding = tuple[Problem, bool]
"""A problem, and whether `pachytype lock` refuses to record the code as it is."""


def _findings(model: PackageModel, lock: Lock | None, path: str) -> list[_Finding]:
    command = f"pachytype lock {model.command_path}"
    if lock is None:
        return [(Problem(path, 1, f"no {LOCK_NAME}: run `{command}` and commit it"), False)]
    now = current(model)
    found: list[_Finding] = []
    if lock.format == 1:
        # Compare with the fingerprints format 1 held; ask for the full shapes.
        now = current(model, 1)
        found.append(
            (
                Problem(
                    path,
                    1,
                    f"{LOCK_NAME} is format 1 (fingerprints only): run `{command}` to record "
                    f"the shapes too, so that later changes can be told compatible or not",
                ),
                False,
            )
        )
    for entity in model.entities:
        found.extend(_entity_findings(entity, now, lock, command))
    for name, locked in sorted(lock.entities.items()):
        if name not in now.entities:
            text = (
                f"entity `{name}` ({locked.cls}) is locked but no longer in the package: "
                f"its stored state and mail can no longer be read; if it is gone on "
                f"purpose, run `{command}`"
            )
            found.append((Problem(path, locked.line, text), False))
    return found


def _entity_findings(entity: EntityModel, code: Lock, lock: Lock, command: str) -> list[_Finding]:
    def problem(text: str, refused: bool = False) -> _Finding:
        return Problem(entity.path, entity.line, f"entity {entity.sym.name}: {text}"), refused

    now = code.entities[entity.name]
    locked = lock.entities.get(entity.name)
    if locked is None:
        return [problem(f"not in {LOCK_NAME} yet: run `{command}` and commit it")]
    found: list[_Finding] = []
    version = entity.state_version
    newest = max(locked.states, default=version)
    if version in locked.states and locked.states[version] != now.states[version]:
        changes = _state_changes(locked, now, version == newest, lock, code)
        bad = [c for c in changes if not c.compatible]
        if changes and not bad:
            found.append(
                problem(
                    f"the state of version {version} changed compatibly ({_list(changes)}): "
                    f"state already stored decodes with the new code, so state_version stays "
                    f"{version} and needs no upgrader; run `{command}` to record it"
                )
            )
        else:
            why = f" ({_list(bad)})" if bad else ""
            found.append(
                problem(
                    f"the state type changed shape but state_version is still {version}"
                    f"{why}: state stored at version {version} would not decode; bump "
                    f"state_version to {newest + 1} and add @upgrade(from_version={newest}) "
                    f"converting the old shape, then run `{command}`",
                    refused=True,
                )
            )
    if version < newest:
        found.append(
            problem(
                f"state_version went down to {version} but {LOCK_NAME} has version {newest}: "
                f"state stored at version {newest} could not be read; set state_version = "
                f"{newest} or higher",
                refused=True,
            )
        )
    oldest = min(locked.states, default=version)
    missing = [v for v in range(oldest, version) if v not in entity.upgrades]
    if missing:
        found.append(
            problem(
                f"state_version is {version} but no @upgrade chain reaches it from version "
                f"{oldest} (missing {', '.join(f'@upgrade(from_version={v})' for v in missing)}"
                f"): add {'them' if len(missing) > 1 else 'it'} to {entity.sym.name}",
                refused=True,
            )
        )
    elif version > newest:
        found.append(problem(f"state_version {version} is not locked yet: run `{command}`"))
    if locked.id and locked.id != now.id:
        was = locked.id_type if locked.id_type != now.id_type else "its fields changed"
        found.append(
            problem(
                f"the id type changed ({was} -> {now.id_type}): entities, their state and "
                f"their mail are stored under the id's text, so the ones already stored would "
                f"no longer be found; keep the id type (add a new entity type for the new ids), "
                f"or move the stored data yourself and run `{command} --force`",
                refused=True,
            )
        )
    if locked.messages != now.messages:
        found.append(_message_finding(entity, locked, now, lock, code, command))
    found.extend(_event_findings(entity, locked, now, lock, code, command))
    return found


def _event_findings(
    entity: EntityModel,
    locked: LockedEntity,
    now: LockedEntity,
    lock: Lock,
    code: Lock,
    command: str,
) -> list[_Finding]:
    """Events are forever: each locked event class must still decode its stored events."""
    name = entity.sym.name

    def problem(text: str, refused: bool = False) -> _Finding:
        return Problem(entity.path, entity.line, f"entity {name}: {text}"), refused

    if bool(locked.events) != bool(now.events) and lock.format != 1:
        was, becomes = (
            ("state-stored", "event-sourced") if now.events else ("event-sourced", "state-stored")
        )
        return [
            problem(
                f"it was {was} when locked and is {becomes} now: what is stored for it "
                f"({'states' if was == 'state-stored' else 'events and snapshots'}) would not be "
                f"read; keep it {was}, or add a new entity type and move the data, then run "
                f"`{command} --force`",
                refused=True,
            )
        ]
    found: list[_Finding] = []
    for event, versions in sorted(locked.events.items()):
        short = event.rsplit(".", 1)[-1]
        newest = max(versions)
        if event not in now.events:
            found.append(
                problem(
                    f"event class `{short}` is locked but gone: its stored events would no "
                    f"longer decode (events are forever); keep the class in the event union "
                    f"(evolve may ignore it)",
                    refused=True,
                )
            )
            continue
        ((version, fp),) = now.events[event].items()
        if version < newest:
            found.append(
                problem(
                    f"event `{short}` is at version {version} but {LOCK_NAME} has version "
                    f"{newest}: an @upcast of it was removed and its events stored at version "
                    f"{newest} could not be read; put the upcaster back",
                    refused=True,
                )
            )
        elif version > newest:
            found.append(
                problem(
                    f"event `{short}` version {version} (its @upcast chain) is not locked "
                    f"yet: run `{command}`"
                )
            )
        elif versions[version] != fp:
            changes = event_changes(event, lock.classes, code.classes)
            bad = [c for c in changes if not c.compatible]
            if changes and not bad:
                found.append(
                    problem(
                        f"event `{short}` changed compatibly ({_list(changes)}): its stored "
                        f"events decode with the new code, no upcaster needed; run "
                        f"`{command}` to record it"
                    )
                )
            else:
                why = f" ({_list(bad)})" if bad else ""
                found.append(
                    problem(
                        f"event `{short}` changed shape{why}: its events stored at version "
                        f"{version} would not decode; add @upcast(event={short}, "
                        f"from_version={version}) converting the stored fields to the new "
                        f"shape, then run `{command}`",
                        refused=True,
                    )
                )
    for event in sorted(set(now.events) - set(locked.events)):
        short = event.rsplit(".", 1)[-1]
        found.append(problem(f"new event class `{short}` is not locked yet: run `{command}`"))
    return found


def _state_changes(
    locked: LockedEntity, now: LockedEntity, is_newest: bool, lock: Lock, code: Lock
) -> list[Change]:
    """How the state changed; empty when the lock cannot tell (format 1, an old version)."""
    if not (is_newest and locked.state_type):
        return []
    return state_changes(locked.state_type, now.state_type, lock.classes, code.classes)


def _message_finding(
    entity: EntityModel,
    locked: LockedEntity,
    now: LockedEntity,
    lock: Lock,
    code: Lock,
    command: str,
) -> _Finding:
    name = entity.sym.name

    def problem(text: str, refused: bool) -> _Finding:
        return Problem(entity.path, entity.line, f"entity {name}: {text}"), refused

    changes = (
        message_changes(locked.message_classes, now.message_classes, lock.classes, code.classes)
        if locked.message_classes
        else []
    )
    bad = [c for c in changes if not c.compatible]
    if changes and not bad:
        return problem(
            f"its messages changed compatibly ({_list(changes)}): mail already waiting in "
            f"mailboxes decodes with the new code; run `{command}` to record it",
            refused=False,
        )
    removed = [m.rsplit(".", 1)[-1] for m in locked.message_classes if m not in now.message_classes]
    why = f" ({_list(bad)})" if bad else ""
    if removed:
        classes = ", ".join(f"`{r}`" for r in removed)
        them = "them" if len(removed) > 1 else "it"
        drain = (
            f"mail of {classes} may still wait in mailboxes (delayed mail too) and would "
            f"become dead letters; drain it first: deploy with {them} still in {name}'s "
            f"message union, handled as a no-op, and stop sending {them}; when `pachytype "
            f"inspect` shows none of that mail waiting, remove {them} and run "
            f"`{command} --force`"
        )
    else:
        drain = (
            "mail already waiting in mailboxes would not decode; add a new message class (or "
            "a new field with a default) instead and keep the old one until its mail is "
            f"drained, or, once no old mail waits, run `{command} --force`"
        )
    return problem(f"its messages changed incompatibly{why}: {drain}", refused=True)


def _list(changes: list[Change]) -> str:
    return "; ".join(c.text for c in changes)
