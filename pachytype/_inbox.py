"""The inbox: the library's entity behind `eco.ask`, in every registry.

Design note. An ask needs an address to be answered at, typed and storable
like any other, reachable from any process. The inbox is an ordinary
entity (type `pachytype.inbox`: the dot keeps it apart from every user
entity name, which is a snake_case class name), one instance per ask (a
random id). It accepts every message class of the registry whose name is
unique in it (the codec tags messages by class name), keeps the first one
it receives (as an envelope to itself, so the codec can store any class)
and ignores later ones. The asker follows it and returns that message.

Cleaning up: an inbox's state is kept only while its asker follows it.
Once the ask is over (answered, timed out or cancelled) the asker deletes
the inbox (`Ecosystem._forget_inbox`), and a message that reaches an inbox
nobody follows (a late answer) is handled but its state is not stored
(`state_kept`), so no row is left behind. Postgres also sweeps inbox states
nobody follows (an asker that died mid-ask).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from attrs import frozen

from pachytype._address import Envelope, Ref, make_envelope, make_ref
from pachytype._entity import Activation, Entity

INBOX: Final = "pachytype.inbox"
"""The inbox's entity type name."""


@frozen
class InboxState:
    """Which inbox I am, and the first message I received (None: still waiting)."""

    me: str
    reply: Envelope[Any] | None = None


class Inbox(Entity[str, Any, InboxState]):
    """Keeps the first message it is sent."""

    activation_budget = None

    def init(self, id: str) -> InboxState:
        return InboxState(me=id)

    def activate(self, msg: Any, state: InboxState) -> Activation[InboxState]:
        if state.reply is not None:
            return [], state
        return [], InboxState(state.me, make_envelope(make_ref(Ref, INBOX, state.me), msg))


Inbox.entity_type = INBOX


def state_kept(entity_type: str, followed: bool) -> bool:
    """Whether a new state of an entity of `entity_type` is stored: always,
    except an inbox's when nobody follows it (its ask is over)."""
    return followed or entity_type != INBOX


def answer_classes(messages: Iterable[type]) -> tuple[type, ...]:
    """The message classes an inbox accepts: those whose name no other class shares."""
    by_name: dict[str, set[type]] = {}
    for cls in messages:
        by_name.setdefault(cls.__name__, set()).add(cls)
    unique = [next(iter(classes)) for classes in by_name.values() if len(classes) == 1]
    return tuple(sorted(unique, key=lambda c: (c.__module__, c.__qualname__)))
