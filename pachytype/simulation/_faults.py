"""Faults a simulation can inject: message loss, duplication, reordering."""

from __future__ import annotations

from typing import Any, Final

from attrs import field, frozen


def _non_negative(_instance: object, attribute: Any, value: int) -> None:
    if value < 0:
        raise ValueError(f"Faults({attribute.name}=...) must be >= 0, got {value!r}")


@frozen
class Faults:
    """The faults a simulation may inject, each switchable.

    Faults hit the network: messages one entity sends another. Envelopes
    from outside (the scenario's stimulus) and an entity's messages to
    itself (its reminders) are never lost, duplicated or reordered.

    `drop` and `duplicate` are budgets: at most that many messages are lost,
    or delivered twice, in one execution (exhaustive search tries every way
    of spending them, including not spending them). `reorder` lets any
    message in flight overtake the others (by default messages from one
    sender to one receiver arrive in send order). `late` lets messages be
    late: a timer may fall due while messages are still in flight (by
    default messages take no virtual time, so timers fall due only when
    nothing else can happen); it explores timeouts racing replies, e.g. a
    payment timeout against the payment (see `pachytype._core.timers`).

    >>> Faults(drop=1, reorder=True)
    Faults(drop=1, duplicate=0, reorder=True, late=False)
    """

    drop: int = field(default=0, validator=_non_negative)
    duplicate: int = field(default=0, validator=_non_negative)
    reorder: bool = False
    late: bool = False

    @classmethod
    def parse(cls, text: str) -> Faults:
        """`"drop=2,duplicate,reorder,late"` ->
        `Faults(drop=2, duplicate=1, reorder=True, late=True)`."""
        counts = {"drop": 0, "duplicate": 0}
        reorder = late = False
        for raw in text.split(","):
            item = raw.strip()
            if not item:
                continue
            name, _, value = item.partition("=")
            name = name.strip()
            if name == "reorder" and not value:
                reorder = True
            elif name == "late" and not value:
                late = True
            elif name in counts and (not value or value.strip().isdigit()):
                counts[name] = int(value) if value else 1
            else:
                raise ValueError(
                    f"unknown fault {item!r}: use drop[=N], duplicate[=N], reorder or late, "
                    f"comma-separated (e.g. 'drop=2,reorder')"
                )
        return cls(drop=counts["drop"], duplicate=counts["duplicate"], reorder=reorder, late=late)

    def __str__(self) -> str:
        parts = [f"{n}={v}" for n, v in (("drop", self.drop), ("duplicate", self.duplicate)) if v]
        if self.reorder:
            parts.append("reorder")
        if self.late:
            parts.append("late")
        return ",".join(parts) or "none"


NO_FAULTS: Final = Faults()
