"""Version 2: the counter's state renames `activations` to `applied` (state
version 2, upgraded from 1) and gains `tags`; new message classes: `Tag` for
counters, `Relay` for audits (which sends a `Tag`)."""

from __future__ import annotations

from typing import Any, assert_never

from attrs import field, frozen

from pachytype import Activation, Address, Entity, upgrade


@frozen
class Note:
    """Counter `src` applied its bump number `n`."""

    src: str
    n: int


@frozen
class Bump:
    """The `n`-th bump a load generator sends counter `src` (1, 2, 3, ...)."""

    src: str
    n: int
    audit: Address[Note]


@frozen
class Tag:
    """New in version 2: remember a label."""

    label: str


@frozen
class CounterState:
    """`seen`: last `n` applied; `applied`: how many; `anomalies`: bumps out of
    sequence; `tags`: labels received."""

    seen: int = 0
    applied: int = 0
    anomalies: int = 0
    tags: tuple[str, ...] = ()


class Counter(Entity[str, Bump | Tag, CounterState]):
    """Applies bumps in sequence and notes each one to its audit; keeps tags."""

    state_version = 2

    def init(self, id: str) -> CounterState:
        return CounterState()

    def activate(self, msg: Bump | Tag, state: CounterState) -> Activation[CounterState]:
        match msg:
            case Bump(src=src, n=n, audit=audit):
                anomalies = state.anomalies + (n != state.seen + 1)
                return [audit.post(Note(src, n))], CounterState(
                    max(state.seen, n), state.applied + 1, anomalies, state.tags
                )
            case Tag(label=label):
                return [], CounterState(
                    state.seen, state.applied, state.anomalies, (*state.tags, label)
                )
            case _:
                assert_never(msg)

    @upgrade(from_version=1)
    def _applied(raw: dict[str, Any]) -> dict[str, Any]:
        """Version 1 called `applied` `activations`."""
        kept = {k: v for k, v in raw.items() if k != "activations"}
        return {**kept, "applied": raw.get("activations", 0)}


@frozen
class AuditState:
    """Last `n` noted per counter, and notes out of sequence."""

    last: dict[str, int] = field(factory=dict)
    anomalies: int = 0


@frozen
class Relay:
    """New in version 2: tag a counter (an activation sending a new message)."""

    label: str
    to: Address[Tag]


class Audit(Entity[str, Note | Relay, AuditState]):
    """Checks that every counter's notes arrive once each, in order; relays tags."""

    def init(self, id: str) -> AuditState:
        return AuditState()

    def activate(self, msg: Note | Relay, state: AuditState) -> Activation[AuditState]:
        match msg:
            case Note(src=src, n=n):
                previous = state.last.get(src, 0)
                anomalies = state.anomalies + (n != previous + 1)
                return [], AuditState({**state.last, src: max(previous, n)}, anomalies)
            case Relay(label=label, to=to):
                return [to.post(Tag(label))], state
            case _:
                assert_never(msg)
