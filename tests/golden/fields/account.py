"""An account with a versioned state and messages from another module."""

from __future__ import annotations

import uuid
from typing import Any

from attrs import evolve

from pachytype import Activation, Entity, upgrade

from .messages import Close, Deposit, Tag, Withdraw
from .state.account import AccountState, Entry

AccountMsg = Deposit | Withdraw | Tag | Close


class Account(Entity[uuid.UUID, AccountMsg, AccountState]):
    """Books deposits and withdrawals."""

    state_version = 2

    def init(self, id: uuid.UUID) -> AccountState:
        return AccountState()

    def activate(self, msg: AccountMsg, state: AccountState) -> Activation[AccountState]:
        match msg:
            case Deposit(amount=amount, note=note):
                entries = (*state.entries, Entry(amount, note))
                return [], evolve(state, balance=state.balance + amount, entries=entries)
            case Withdraw(amount=amount, reason=reason):
                entries = (*state.entries, Entry(-amount, reason))
                return [], evolve(state, balance=state.balance - amount, entries=entries)
            case Tag(names=names):
                return [], evolve(state, tags=state.tags | frozenset(names))
            case Close():
                return [], state

    @upgrade(from_version=1)
    def _entries(raw: dict[str, Any]) -> dict[str, Any]:
        return {**raw, "entries": []}
