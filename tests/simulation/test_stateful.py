"""`SimulationMachine`: hypothesis interleaves generated sends, deliveries in
any order, faults and clock moves, and checks invariants after every step."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from examples.bank.account import AccountId, AccountState, Deposit
from examples.bank.refs import REGISTRY, account
from pachytype import Faults
from pachytype.simulation import InvariantError, Kind, Outcome
from pachytype.simulation.stateful import SimulationMachine
from tests.simulation import refs
from tests.simulation.refs import REGISTRY as TEST_REGISTRY

NAMES = [AccountId(n) for n in "abc"]
names = st.sampled_from(NAMES)
amounts = st.integers(min_value=1, max_value=50)


def deposit(who: AccountId, amount: int) -> object:
    return account(who).deposit(amount=amount)


class Bank(SimulationMachine):
    """Deposits and transfers among three accounts, refused ones dead-lettered."""

    registry = REGISTRY
    sends = st.one_of(
        st.builds(lambda who, n: account(who).deposit(amount=n), names, amounts),
        st.builds(lambda a, b, n: account(a).transfer(amount=n, to=b), names, names, amounts),
    )
    on_error = "dead_letter"

    def balances(self, outcome: Outcome) -> list[int]:
        return [outcome.get(account(n), AccountState()).balance for n in NAMES]

    def deposited(self) -> int:
        return sum(e.message.amount for e in self.sent if isinstance(e.message, Deposit))

    def check(self, outcome: Outcome) -> None:
        assert min(self.balances(outcome)) >= 0, "an account is overdrawn"
        assert sum(self.balances(outcome)) <= self.deposited(), "money was made"

    def settled(self, outcome: Outcome) -> None:
        assert sum(self.balances(outcome)) == self.deposited(), "money was lost"


FAST = settings(
    max_examples=60, stateful_step_count=20, deadline=None, database=None, derandomize=True
)


def test_the_bank_conserves_money_in_every_generated_run() -> None:
    run_state_machine_as_test(Bank, settings=FAST)


class LossyBank(Bank):
    faults = Faults(drop=1)


def test_a_lossy_network_loses_money_and_the_machine_shows_how() -> None:
    with pytest.raises(InvariantError) as info:
        run_state_machine_as_test(
            LossyBank,
            settings=settings(FAST, max_examples=300, suppress_health_check=list(HealthCheck)),
        )
    error = info.value
    assert "money was lost" in str(error)
    # The shrunk run: a transfer whose deposit the network dropped.
    assert [s.kind for s in error.trace].count(Kind.DROP) == 1
    dropped = next(s for s in error.trace if s.kind is Kind.DROP)
    assert isinstance(dropped.message, Deposit) and dropped.sender is not None


class Totals(SimulationMachine):
    """Adds to a counter that refuses to pass 100 (its activation raises)."""

    registry = TEST_REGISTRY
    sends = st.builds(lambda n: refs.total("t").add(n=n), st.integers(1, 60))


def test_an_activation_error_fails_the_run_with_the_whole_trace() -> None:
    from pachytype import SimulationError

    with pytest.raises(SimulationError) as info:
        run_state_machine_as_test(Totals, settings=FAST)
    error = info.value
    assert "over 100" in str(error)
    assert sum(s.message.n for s in error.trace) > 100  # type: ignore[attr-defined]


class Alarms(SimulationMachine):
    """Delayed hops: the clock rule puts them in flight when due."""

    registry = TEST_REGISTRY
    sends = st.builds(
        lambda v: refs.node(1).hop(value=v, route=(refs.node(2),), delay_ms=500),
        st.integers(0, 9),
    )
    max_delay = 1.0

    def settled(self, outcome: Outcome) -> None:
        sent = sorted(e.message.value for e in self.sent)  # type: ignore[attr-defined]
        assert sorted(outcome.get(refs.node(2), ())) == sent


def test_delayed_messages_arrive_when_the_clock_moves() -> None:
    run_state_machine_as_test(Alarms, settings=FAST)
