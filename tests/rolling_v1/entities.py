"""Version 1: a counter applies numbered bumps and notes each to its audit."""

from __future__ import annotations

from typing import assert_never

from attrs import field, frozen

from pachytype import Activation, Address, Entity


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
class CounterState:
    """`seen`: last `n` applied; `activations`: how many; `anomalies`: bumps
    out of sequence (a gap or a repeat)."""

    seen: int = 0
    activations: int = 0
    anomalies: int = 0


class Counter(Entity[str, Bump, CounterState]):
    """Applies bumps in sequence and notes each one to its audit."""

    def init(self, id: str) -> CounterState:
        return CounterState()

    def activate(self, msg: Bump, state: CounterState) -> Activation[CounterState]:
        match msg:
            case Bump(src=src, n=n, audit=audit):
                anomalies = state.anomalies + (n != state.seen + 1)
                return [audit.post(Note(src, n))], CounterState(
                    max(state.seen, n), state.activations + 1, anomalies
                )
            case _:
                assert_never(msg)


@frozen
class AuditState:
    """Last `n` noted per counter, and notes out of sequence."""

    last: dict[str, int] = field(factory=dict)
    anomalies: int = 0


class Audit(Entity[str, Note, AuditState]):
    """Checks that every counter's notes arrive once each, in order."""

    def init(self, id: str) -> AuditState:
        return AuditState()

    def activate(self, msg: Note, state: AuditState) -> Activation[AuditState]:
        previous = state.last.get(msg.src, 0)
        anomalies = state.anomalies + (msg.n != previous + 1)
        return [], AuditState({**state.last, msg.src: max(previous, msg.n)}, anomalies)
