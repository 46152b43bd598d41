"""The schema lock: `pachytype.lock`, the shapes a package's stored data may have.

Design note. Stored state outlives code: state written at `state_version`
N must still be readable after every deploy. The lock records, per entity,
the structural fingerprint of its state type at every `state_version` it
has had, and the fingerprint of its message union (messages wait in
mailboxes across deploys too). Users commit it; `pachytype check` compares
the code with it:

- the state's shape changed but `state_version` did not: stored state of
  that version would no longer fit; bump the version and add an upgrader;
- `state_version` rose without `@upgrade` functions reaching it from the
  oldest version the lock knows (data of any locked version may exist);
- `state_version` went down; an entity or a version is not locked yet;
  the message union changed; a locked entity disappeared.

`pachytype lock` writes the current fingerprints and keeps the older
versions' lines (the history is what makes the chain check possible). It
refuses to overwrite the shape of a version that is already locked (the
mistake the lock exists to catch) unless forced.

The file is plain text, one fact per line, sorted, so diffs read well:

    entity account examples.bank.account.Account
      messages 5d41...
      state 1 7c21...
      state 2 9a0b...

Fingerprints come from `pachytype._schema` over the generator's static
model, the same numbers the runtime computes from live classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from attrs import evolve, frozen

from pachytype import _schema  # noqa: PLC2701 (shared with the runtime)

from .fingerprint import schema as schema_of
from .model import EntityModel, PackageModel
from .problems import Problem

LOCK_NAME = "pachytype.lock"
FORMAT = 1


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


@frozen
class Lock:
    """The contents of `pachytype.lock`."""

    package: str
    entities: Mapping[str, LockedEntity]


class LockError(Exception):
    """`pachytype.lock` cannot be read; `problem` says where and why."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


def lock_path(directory: Path) -> Path:
    """Where the package's lock lives: beside its `__init__.py`."""
    return directory / LOCK_NAME


def current(model: PackageModel) -> Lock:
    """The lock the code in `model` implies (only its current state versions)."""
    schema = schema_of(model)
    entities = {}
    for entity in schema.entities:
        entities[entity.name] = LockedEntity(
            name=entity.name,
            cls=entity.cls,
            messages=_schema.messages_fingerprint(schema, entity),
            states={entity.state_version: _schema.state_fingerprint(schema, entity)},
        )
    return Lock(model.package, entities)


def merged(model: PackageModel, previous: Lock | None) -> Lock:
    """The lock to write: the code's fingerprints, older versions kept from `previous`."""
    now = current(model)
    if previous is None:
        return now
    entities = {}
    for name, entity in now.entities.items():
        old = previous.entities.get(name)
        states = dict(old.states) if old is not None else {}
        states.update(entity.states)
        entities[name] = evolve(entity, states=dict(sorted(states.items())), line=0)
    return Lock(now.package, entities)


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
        lines += ["", f"entity {entity.name} {entity.cls}", f"  messages {entity.messages}"]
        lines += [f"  state {v} {fp}" for v, fp in sorted(entity.states.items())]
    return "\n".join(lines) + "\n"


def parse(text: str, path: str) -> Lock:
    """Read a lock file (raises `LockError` naming the line)."""
    package = ""
    entities: dict[str, LockedEntity] = {}
    entity: LockedEntity | None = None

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
        words = line.split()
        match words:
            case ["format", version]:
                if version != str(FORMAT):
                    raise bad(number, f"unknown lock format {version!r} (this pachytype reads 1)")
            case ["package", name]:
                package = name
            case ["entity", name, cls]:
                entity = LockedEntity(name, cls, "", {}, number)
                entities[name] = entity
            case ["messages", fp] if entity is not None:
                entity = entities[entity.name] = evolve(entity, messages=fp)
            case ["state", version, fp] if entity is not None and version.isdigit():
                states = {**entity.states, int(version): fp}
                entity = entities[entity.name] = evolve(entity, states=states)
            case _:
                raise bad(number, f"cannot read {line!r}")
    return Lock(package, entities)


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
    for entity in model.entities:
        found.extend(_entity_findings(entity, now.entities[entity.name], lock, command))
    for name, locked in sorted(lock.entities.items()):
        if name not in now.entities:
            text = (
                f"entity `{name}` ({locked.cls}) is locked but no longer in the package: "
                f"its stored state and mail can no longer be read; if it is gone on "
                f"purpose, run `{command}`"
            )
            found.append((Problem(path, locked.line, text), False))
    return found


def _entity_findings(
    entity: EntityModel, now: LockedEntity, lock: Lock, command: str
) -> list[_Finding]:
    def problem(text: str, refused: bool = False) -> _Finding:
        return Problem(entity.path, entity.line, f"entity {entity.sym.name}: {text}"), refused

    locked = lock.entities.get(entity.name)
    if locked is None:
        return [problem(f"not in {LOCK_NAME} yet: run `{command}` and commit it")]
    found: list[_Finding] = []
    version = entity.state_version
    newest = max(locked.states, default=version)
    if version in locked.states and locked.states[version] != now.states[version]:
        found.append(
            problem(
                f"the state type changed shape but state_version is still {version} "
                f"({LOCK_NAME} has another shape for version {version}): bump state_version "
                f"to {newest + 1} and add @upgrade(from_version={newest}) converting the old "
                f"shape, then run `{command}`",
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
    if locked.messages != now.messages:
        found.append(
            problem(
                f"its message classes changed since {LOCK_NAME}: messages already waiting in "
                f"mailboxes must still decode (give new fields defaults, keep a removed class "
                f"until its mail is drained); then run `{command}` to record the change"
            )
        )
    return found
