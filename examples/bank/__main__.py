"""`python -m examples.bank`: a short tour of the bank example.

Opens an ecosystem, makes a few deposits and transfers (one of them an
overdraft, refused), and prints the balances with rich.
"""

from __future__ import annotations

import asyncio

from rich.console import Console
from rich.table import Table

from examples.bank.account import AccountId, money
from examples.bank.refs import REGISTRY, account
from pachytype import ActivationError, Ecosystem, InMemory

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


async def main() -> None:
    """Open an in-memory ecosystem, run the tour, print the balances."""
    console = Console()
    async with InMemory(REGISTRY) as eco:
        balances = await tour(eco, console)
    console.print(balances_table(balances))


if __name__ == "__main__":
    asyncio.run(main())
