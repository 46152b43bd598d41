"""The bank example: money is conserved, balances never go negative, and
the demo (`python -m examples.bank`) runs."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from examples.bank.__main__ import balances_table, tour
from examples.bank.account import AccountId, AccountState, Transfer, money
from examples.bank.refs import REGISTRY, account
from pachytype import ActivationError, Envelope, Simulation
from pachytype.testing import EcosystemFactory

ROOT = Path(__file__).resolve().parent.parent.parent
A, B = AccountId("a"), AccountId("b")


async def test_deposit_withdraw_and_transfer_move_money(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        assert await eco.call(account(A).deposit(amount=100)) == AccountState(100)
        assert await eco.call(account(A).withdraw(amount=30)) == AccountState(70)
        assert await eco.call(account(A).transfer(amount=20, to=B)) == AccountState(50)
        await eco.settle()
        assert await eco.state(account(B)) == AccountState(20)


async def test_an_overdraft_is_refused_and_the_balance_kept(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        await eco.call(account(A).deposit(amount=10))
        with pytest.raises(ActivationError) as refused:
            await eco.call(account(A).withdraw(amount=11))
        assert str(refused.value).startswith("entity 'account' (id 'a') raised InsufficientFunds")
        assert str(refused.value.error) == (
            "withdrawal of 0.11 refused: the balance is only 0.10 and balances never go "
            "negative; deposit first or ask for at most 0.10"
        )
        with pytest.raises(ActivationError, match=r"transfer to 'b' of 0\.50 refused"):
            await eco.call(account(A).transfer(amount=50, to=B))
        await eco.settle()
        assert await eco.state(account(A)) == AccountState(10)
        assert await eco.state(account(B)) == AccountState(0)
        assert [d.error_type for d in await eco.dead_letters()] == ["InsufficientFunds"] * 2


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (lambda: account(A).deposit(amount=0), r"deposit of 0\.00"),
        (lambda: account(A).withdraw(amount=-5), r"withdrawal of -0\.05"),
        (lambda: account(A).transfer(amount=-1, to=B), r"transfer to 'b' of -0\.01"),
    ],
    ids=["deposit", "withdraw", "transfer"],
)
async def test_amounts_must_be_positive(
    ecosystem: EcosystemFactory, make: Callable[[], Envelope[AccountState]], what: str
) -> None:
    async with ecosystem(REGISTRY) as eco:
        await eco.call(account(A).deposit(amount=10))
        with pytest.raises(ActivationError, match=f"{what} refused: amounts must be positive"):
            await eco.call(make())
        await eco.settle()
        assert await eco.state(account(A)) == AccountState(10)
        assert await eco.state(account(B)) == AccountState(0)


async def test_a_transfer_to_self_leaves_the_balance_unchanged(
    ecosystem: EcosystemFactory,
) -> None:
    async with ecosystem(REGISTRY) as eco:
        await eco.call(account(A).deposit(amount=100))
        # The money leaves, then comes back as a deposit.
        assert await eco.call(account(A).transfer(amount=30, to=A)) == AccountState(70)
        await eco.settle()
        assert await eco.state(account(A)) == AccountState(100)
        with pytest.raises(ActivationError, match=r"transfer to 'a' of 1\.01 refused"):
            await eco.call(account(A).transfer(amount=101, to=A))
        assert await eco.state(account(A)) == AccountState(100)


RUNS = itertools.count()
NAMES = [AccountId(f"acct{i}") for i in range(5)]

transfers = st.builds(
    Transfer,
    amount=st.integers(min_value=1, max_value=60),
    to=st.sampled_from(NAMES),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    opening=st.lists(st.integers(min_value=0, max_value=100), min_size=5, max_size=5),
    # (sender index, transfer, client index): each client sends its share in
    # order, yielding to the others at random points.
    ops=st.lists(
        st.tuples(st.integers(0, 4), transfers, st.integers(0, 3), st.booleans()),
        max_size=40,
    ),
)
async def test_transfers_under_any_interleaving_conserve_money(
    ecosystem: EcosystemFactory,
    opening: list[int],
    ops: list[tuple[int, Transfer, int, bool]],
) -> None:
    # A fresh store per example: durable ecosystems would otherwise carry
    # the previous example's balances over.
    async with ecosystem(REGISTRY, name=f"run{next(RUNS)}") as eco:
        for name, amount in zip(NAMES, opening, strict=True):
            if amount:
                await eco.call(account(name).deposit(amount=amount))

        async def client(index: int) -> None:
            for sender, transfer, owner, yield_after in ops:
                if owner == index:
                    await eco.send(account(NAMES[sender]).post(transfer))
                    if yield_after:
                        await asyncio.sleep(0)

        await asyncio.gather(*(client(i) for i in range(4)))
        await eco.settle()
        balances = [(await eco.state(account(name))).balance for name in NAMES]

        assert sum(balances) == sum(opening)
        assert min(balances) >= 0
        # Exactly the refused transfers are dead letters, each for want of money;
        # the balances are the opening ones moved by every other transfer.
        refused = Counter((d.to.id, d.message) for d in await eco.dead_letters())
        assert all(d.error_type == "InsufficientFunds" for d in await eco.dead_letters())
        expected = dict(zip(NAMES, opening, strict=True))
        for sender, transfer, _, _ in ops:
            key = (NAMES[sender], transfer)
            if refused[key]:
                refused[key] -= 1
                continue
            expected[NAMES[sender]] -= transfer.amount
            expected[transfer.to] += transfer.amount
        assert +refused == Counter(), "a dead letter matches no transfer that was sent"
        assert balances == [expected[name] for name in NAMES]


def test_every_delivery_order_of_crossing_transfers_conserves_money() -> None:
    a, b, c, d = (AccountId(name) for name in "abcd")
    sim = Simulation(REGISTRY, seed=7, on_error="dead_letter")
    sim.run([account(a).deposit(amount=50), account(b).deposit(amount=20)])
    report = sim.exhaust(
        [
            account(a).transfer(amount=30, to=b),
            account(b).transfer(amount=50, to=c),
            account(c).transfer(amount=20, to=a),
            account(a).transfer(amount=40, to=d),
            account(d).transfer(amount=10, to=b),
        ]
    )
    assert report.complete, report.summary()
    # Which transfers are refused depends on the order: several outcomes...
    assert len(report.outcomes) > 1, str(report)
    for found in report.outcomes:
        states = [found.outcome.get(account(x), AccountState()) for x in (a, b, c, d)]
        balances = [s.balance for s in states]
        # ...but in every one no money is made or lost, and none is overdrawn.
        assert sum(balances) == 70, str(found.trace)
        assert len(balances) == 4
        assert min(balances) >= 0, str(found.trace)


async def test_the_demo_tour_prints_and_returns_the_balances(ecosystem: EcosystemFactory) -> None:
    out = io.StringIO()
    async with ecosystem(REGISTRY) as eco:
        balances = await tour(eco, Console(file=out, width=200))
    assert balances == {"alice": 70_00, "bob": 34_50, "carol": 15_50}
    assert "account 'carol': withdrawal of 1,000.00 refused" in out.getvalue()
    assert "only 15.50" in out.getvalue()
    table = io.StringIO()
    Console(file=table, width=80).print(balances_table(balances))
    assert "34.50" in table.getvalue()
    assert re.search(r"total\W+120\.00", table.getvalue()), table.getvalue()


@pytest.mark.parametrize(
    ("cents", "shown"),
    [(0, "0.00"), (5, "0.05"), (1_234_56, "1,234.56"), (-1, "-0.01"), (-100_00, "-100.00")],
)
def test_money_is_shown_in_units_and_cents(cents: int, shown: str) -> None:
    assert money(cents) == shown


def test_python_dash_m_examples_bank_runs(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    done = subprocess.run(
        [sys.executable, "-m", "examples.bank"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "carol" in done.stdout
    assert "total" in done.stdout
