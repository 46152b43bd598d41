"""Envelopes of different entities travel together: an activation returns
them, `send` takes any number."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from examples.bank.account import AccountId
from examples.bank.refs import account
from examples.counter.counter import CounterId
from examples.counter.refs import counter
from examples.ping_pong import refs
from examples.ping_pong.ping import PingerId
from examples.ping_pong.pong import PongerId
from pachytype import Ecosystem, Envelope


def batch() -> Sequence[Envelope[Any]]:
    return [
        account(AccountId("a")).deposit(amount=1),
        counter(CounterId("c")).increment(),
        refs.pinger(PingerId("p")).serve(opponent=PongerId("q")),
    ]


async def send_all(eco: Ecosystem) -> None:
    await eco.send(*batch())
    await eco.send()
