"""Message classes with every kind of field the generator turns into parameters."""

from __future__ import annotations

import collections.abc
import datetime
from typing import ClassVar, Literal

import attr
from attrs import Factory, field, frozen

import tests.golden.fields.state.account
from tests.golden.fields.state.account import Color as AccountColor

from .state.account import Entry


@frozen
class Color:
    """A paint color (its name clashes with `state.account.Color`)."""

    name: str


@frozen
class Stamped:
    """Base of timestamped messages: attrs puts its fields first (kw_only here)."""

    at: datetime.datetime | None = field(default=None, kw_only=True)


@frozen
class Deposit(Stamped):
    """Book `amount`."""

    amount: int
    note: str = "thanks"
    entry: Entry | None = None


@frozen
class Tag:
    """Defaults of every kind: each ref call must get fresh mutable defaults."""

    LIMIT: ClassVar[int] = 3

    names: list[str] = field(factory=list)
    scores: dict[str, int] = field(default=Factory(dict))
    _secret: str = ""
    label: str = field(default="x", alias="title")
    counted: int = field(init=False, default=0)
    account_color: AccountColor = AccountColor.GREEN
    mood: Literal["calm", "busy"] = "calm"
    given: str = "a field named like the generated helper"
    size: int = field()
    paint: Color = field(kw_only=True)

    @size.default
    def _size(self) -> int:
        return len(self.names)


@attr.s(auto_attribs=True, frozen=True)
class Withdraw:
    """The old attrs API."""

    amount: int
    reason: str = attr.ib(default="")
    attachments: collections.abc.Sequence[str] = ()
    linked: tests.golden.fields.state.account.Entry | None = None


@frozen
class Close:
    """Long parameter names: the ref method's signature does not fit one line."""

    because_the_customer_asked_for_it_politely: bool = False
    and_the_branch_manager_agreed_to_it_as_well: bool = False
    reference_number_of_the_request: int = -1
