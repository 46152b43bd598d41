"""Counters that check their own activation sequence, and audits that check
the effects (messages) counters send: a lost, repeated or reordered
activation shows up as an anomaly in committed state."""

from __future__ import annotations

from attrs import field, frozen

from pachytype import Activation, Address, Entity


@frozen
class Note:
    """Counter `src` applied its bump number `n`."""

    src: str
    n: int


@frozen
class Bump:
    """The `n`-th message the load generator sends counter `src` (1, 2, 3, ...);
    the counter reports it to `audit`."""

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
        anomalies = state.anomalies + (msg.n != state.seen + 1)
        note = msg.audit.post(Note(msg.src, msg.n))
        return [note], CounterState(max(state.seen, msg.n), state.activations + 1, anomalies)


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


@frozen
class Rewrite:
    """Make the page's `n`-th version."""

    n: int


@frozen
class PageState:
    """`n`: the version; `body`: `size` characters that name it."""

    n: int = 0
    body: str = ""


PAGE_SIZE = 100_000
"""Characters in a page body: far beyond what one NOTIFY can carry (8000 bytes)."""


class Page(Entity[str, Rewrite, PageState]):
    """A big state that changes with every message (for followers)."""

    def init(self, id: str) -> PageState:
        return PageState()

    def activate(self, msg: Rewrite, state: PageState) -> Activation[PageState]:
        return [], PageState(msg.n, (f"{msg.n:08d}" * (PAGE_SIZE // 8 + 1))[:PAGE_SIZE])
