"""`python -m examples.bank`: a short tour of the bank example.

Opens the bank on LocalDisk (`bank.db` in the working directory), makes a
few deposits and transfers (one of them an overdraft, refused), and prints
the balances with rich. Running it again continues from the balances the
previous run left on disk.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.console import Console
from rich.table import Table

from examples.bank.account import AccountId, money
from examples.bank.refs import REGISTRY, account
from pachytype import ActivationError, Ecosystem, LocalDisk

ALICE, BOB, CAROL = AccountId("alice"), AccountId("bob"), AccountId("carol")


async def tour(eco: Ecosystem, console: Console) -> dict[AccountId, int]:
    """Run the demo's operations on `eco`, narrating on `console`; the balances
    after, in cents."""
    await eco.send(account(ALICE).deposit(amount=100_00), account(BOB).deposit(amount=20_00))
    await eco.send(account(ALICE).transfer(amount=30_00, to=BOB))
    await eco.send(account(BOB).transfer(amount=15_50, to=CAROL))
    console.print(
        "sent: deposits of 100.00 to alice and 20.00 to bob, 30.00 alice→bob, 15.50 bob→carol"
    )
    await eco.settle()
    try:
        await eco.call(account(CAROL).withdraw(amount=1_000_00))
    except ActivationError as refused:
        console.print(f"[yellow]{refused.entity_type} {refused.id!r}:[/] {refused.error}")
    return {who: (await eco.state(account(who))).balance for who in (ALICE, BOB, CAROL)}


def balances_table(balances: dict[AccountId, int]) -> Table:
    """The balances as a rich table, with their total."""
    table = Table(title="balances")
    table.add_column("account")
    table.add_column("balance", justify="right")
    for who, balance in balances.items():
        table.add_row(who, money(balance))
    table.add_section()
    table.add_row("[bold]total", f"[bold]{money(sum(balances.values()))}")
    return table


DATABASE = Path("bank.db")
"""Where the demo keeps the bank: in the working directory."""


async def main() -> None:
    """Open the bank on LocalDisk (`bank.db`), run the tour, print the balances.
    Run it again: it continues from the state the previous run left."""
    console = Console()
    again = DATABASE.exists()
    async with LocalDisk(DATABASE, REGISTRY) as eco:
        if again:
            before = [(await eco.state(account(who))).balance for who in (ALICE, BOB, CAROL)]
            console.print(
                f"{DATABASE} found: continuing from the previous run's balances "
                f"(total {money(sum(before))})"
            )
        balances = await tour(eco, console)
    console.print(balances_table(balances))
    console.print(
        f"kept in {DATABASE.resolve()}: run again to continue from here, delete it to start over"
    )


if __name__ == "__main__":
    asyncio.run(main())
