"""The Account entity: deposits, withdrawals and transfers, no overdrafts.

Design note. A request that would overdraw the account raises
`InsufficientFunds` inside `activate`: the entity keeps its balance, the
message goes to the dead letters and a caller's `eco.call` raises
`ActivationError` naming the account. A transfer debits this account and
sends a `Deposit` to the other one; money in flight between the two is in
neither balance until the deposit is handled. Amounts and balances are
integers of cents (state version 2), shown to people by `money`.
"""

from __future__ import annotations

from typing import Any, NewType, assert_never

from attrs import frozen

from examples.bank import refs
from pachytype import Activation, Entity, upgrade

AccountId = NewType("AccountId", str)


def money(cents: int) -> str:
    """`cents` for people: 123456 -> "1,234.56", -5 -> "-0.05"."""
    sign = "-" if cents < 0 else ""
    units, rest = divmod(abs(cents), 100)
    return f"{sign}{units:,}.{rest:02d}"


class InsufficientFunds(ValueError):
    """A withdrawal or transfer larger than the balance."""

    def __init__(self, what: str, amount: int, balance: int) -> None:
        super().__init__(
            f"{what} of {money(amount)} refused: the balance is only {money(balance)} and "
            f"balances never go negative; deposit first or ask for at most {money(balance)}"
        )


class NotPositive(ValueError):
    """An amount of zero or less."""

    def __init__(self, what: str, amount: int) -> None:
        super().__init__(f"{what} of {money(amount)} refused: amounts must be positive")


@frozen
class Deposit:
    """Add `amount` cents to the balance."""

    amount: int


@frozen
class Withdraw:
    """Take `amount` cents out of the balance."""

    amount: int


@frozen
class Transfer:
    """Move `amount` cents from this account to the account `to`."""

    amount: int
    to: AccountId


AccountMsg = Deposit | Withdraw | Transfer


@frozen
class AccountState:
    """The balance, in cents (state version 2; version 1 stored whole units)."""

    balance: int = 0


class Account(Entity[AccountId, AccountMsg, AccountState]):
    """One bank account."""

    state_version = 2

    def init(self, id: AccountId) -> AccountState:
        return AccountState()

    def activate(self, msg: AccountMsg, state: AccountState) -> Activation[AccountState]:
        match msg:
            case Deposit(amount=amount):
                _check_positive("deposit", amount)
                return [], AccountState(state.balance + amount)
            case Withdraw(amount=amount):
                return [], AccountState(_debit("withdrawal", amount, state.balance))
            case Transfer(amount=amount, to=to):
                left = _debit(f"transfer to {to!r}", amount, state.balance)
                return [refs.account(to).deposit(amount=amount)], AccountState(left)
            case _:
                assert_never(msg)

    @upgrade(from_version=1)
    def _cents(raw: dict[str, Any]) -> dict[str, Any]:
        """Version 1 stored whole units; version 2 stores cents."""
        return {"balance": raw["balance"] * 100}


def _check_positive(what: str, amount: int) -> None:
    if amount <= 0:
        raise NotPositive(what, amount)


def _debit(what: str, amount: int, balance: int) -> int:
    """The balance after taking `amount` out, or `InsufficientFunds`."""
    _check_positive(what, amount)
    if amount > balance:
        raise InsufficientFunds(what, amount, balance)
    return balance - amount
