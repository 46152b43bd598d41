"""A simulation's outcome is typed by the ref's state type."""

from __future__ import annotations

from typing import assert_type

from examples.bank.account import AccountId, AccountState
from examples.bank.refs import REGISTRY, account
from pachytype import Simulation


def balance(name: str) -> int:
    sim = Simulation(REGISTRY)
    report = sim.exhaust([account(AccountId(name)).deposit(amount=5)])
    outcome = report.outcomes[0].outcome
    assert_type(outcome.get(account(AccountId(name))), AccountState | None)
    state = outcome.get(account(AccountId(name)), AccountState())
    assert_type(state, AccountState)
    assert_type(outcome.state(account(AccountId(name))), AccountState)
    return state.balance
