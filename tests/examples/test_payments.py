"""The payments example: orders charged through a worker that calls a local
HTTP provider which fails, loses answers, stalls and declines; on every
ecosystem. Then on Postgres with real processes: the node performing the
charges is killed mid-effect (the provider charged, the answer never left)
and another node retries them; every charge is performed at least once and
applied exactly once, thanks to the idempotency key."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from attrs import evolve

from examples.payments import refs
from examples.payments.order import Order, OrderId, OrderMsg, OrderState, PaymentTimeout
from examples.payments.provider import PROVIDER_URL, Provider
from pachytype import Activation, Ecosystem, Faults, Postgres, Registry, Simulation, worker_state
from pachytype._postgres.testing import (
    drop_schemas,
    new_schema_name,
    require_postgres,
    spawn_node,
    stop_processes,
)
from pachytype.simulation._trace import Kind
from pachytype.testing import EcosystemFactory


@pytest.fixture
async def provider(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Provider]:
    """The payment provider, served on a local port the workers are told of."""
    served = Provider()
    monkeypatch.setenv(PROVIDER_URL, await served.start())
    yield served
    await served.stop()


async def until(
    eco: Ecosystem, order: OrderId, done: Callable[[OrderState], bool], timeout: float = 30.0
) -> OrderState:
    """Follow the order until `done(state)`."""
    states = eco.follow(refs.order(order))
    try:
        async with asyncio.timeout(timeout):
            async for state in states:
                if done(state):
                    return state
    finally:
        await states.aclose()  # type: ignore[attr-defined]  # an async generator
    raise AssertionError("the ecosystem closed")


async def eventually(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def paid(state: OrderState) -> bool:
    return state.status == "paid"


async def test_each_order_is_charged_once(ecosystem: EcosystemFactory, provider: Provider) -> None:
    async with ecosystem(refs.REGISTRY) as eco:
        orders = [OrderId(f"o{i}") for i in range(5)]
        await eco.send(*(refs.order(o).place(cents=100 + i) for i, o in enumerate(orders)))
        states = [await until(eco, o, paid) for o in orders]
        assert [s.charges_seen for s in states] == [1] * 5
        assert sorted(s.charge or "" for s in states) == [f"ch_{n}" for n in range(1, 6)]
        assert (provider.performed, provider.applied, provider.duplicates) == (5, 5, 0)
        worker = await worker_state(eco, refs.payments())
        assert (worker.completed, worker.pending, worker.duplicates) == (5, (), 0)


async def test_a_failing_provider_is_retried_until_it_charges(
    ecosystem: EcosystemFactory, provider: Provider
) -> None:
    provider.fail_next = 3
    async with ecosystem(refs.REGISTRY) as eco:
        await eco.send(refs.order(OrderId("o")).place(cents=250))
        state = await until(eco, OrderId("o"), paid)
        assert (state.charge, state.charges_seen) == ("ch_1", 1)
        assert (provider.performed, provider.applied) == (4, 1)


async def test_lost_answers_are_absorbed_by_the_idempotency_key(
    ecosystem: EcosystemFactory, provider: Provider
) -> None:
    provider.lose_next = 2  # charged, then answered 500: the worker asks again
    async with ecosystem(refs.REGISTRY) as eco:
        await eco.send(refs.order(OrderId("o")).place(cents=250))
        state = await until(eco, OrderId("o"), paid)
        assert (state.charge, state.charges_seen) == ("ch_1", 1)
        assert (provider.performed, provider.applied, provider.duplicates) == (3, 1, 2)


async def test_a_stalled_provider_is_timed_out_and_asked_again(
    ecosystem: EcosystemFactory, provider: Provider
) -> None:
    provider.stall()
    async with ecosystem(refs.REGISTRY) as eco:
        await eco.send(refs.order(OrderId("o")).place(cents=250))
        await eventually(lambda: provider.performed >= 2)  # the first attempt timed out
        provider.release()
        state = await until(eco, OrderId("o"), paid)
        assert (state.charge, state.charges_seen, provider.applied) == ("ch_1", 1, 1)


async def test_a_declined_card_fails_the_order_without_retrying(
    ecosystem: EcosystemFactory, provider: Provider
) -> None:
    provider.declined.add("o")
    async with ecosystem(refs.REGISTRY) as eco:
        await eco.send(refs.order(OrderId("o")).place(cents=250))
        state = await until(eco, OrderId("o"), lambda s: s.status == "failed")
        assert state.reason == "card declined"
        assert (provider.performed, provider.applied) == (1, 0)


async def test_a_provider_that_never_answers_is_given_up(
    ecosystem: EcosystemFactory, provider: Provider
) -> None:
    provider.fail_next = 1000
    async with ecosystem(refs.REGISTRY) as eco:
        await eco.send(refs.order(OrderId("o")).place(cents=250))
        state = await until(eco, OrderId("o"), lambda s: s.status == "failed")
        assert state.reason is not None
        assert state.reason.startswith("no answer after 6 attempts (ProviderError: provider")
        assert provider.performed == 6
        assert (await worker_state(eco, refs.payments())).gave_up == 1


async def test_a_charge_landing_after_the_cancel_is_refunded(
    ecosystem: EcosystemFactory, provider: Provider
) -> None:
    provider.stall()  # the provider charges, the answer is held
    async with ecosystem(refs.REGISTRY) as eco:
        order = refs.order(OrderId("o"))
        await eco.send(order.place(cents=250))
        await eventually(lambda: provider.applied == 1)
        assert (await eco.call(order.cancel())).status == "cancelled"
        provider.release()  # the charge's answer arrives after the cancel
        state = await until(eco, OrderId("o"), lambda s: s.status == "refunded")
        assert (state.charge, state.refund, state.charges_seen) == ("ch_1", "re_1", 1)
        assert provider.refunds["refund-ch_1"]["charge"] == "ch_1"


async def test_cancelling_a_paid_order_refunds_it(
    ecosystem: EcosystemFactory, provider: Provider
) -> None:
    async with ecosystem(refs.REGISTRY) as eco:
        order = refs.order(OrderId("o"))
        await eco.send(order.place(cents=250))
        await until(eco, OrderId("o"), paid)
        await eco.send(order.cancel())
        state = await until(eco, OrderId("o"), lambda s: s.status == "refunded")
        assert (state.refund, len(provider.refunds)) == ("re_1", 1)


def test_a_worker_process_killed_mid_charge_is_retried_by_another_and_charges_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = require_postgres()
    schema = new_schema_name()
    n = 12

    def node(name: str) -> subprocess.Popen[bytes]:
        registry = "examples.payments.refs:REGISTRY"
        return spawn_node(
            dsn, schema, registry, node_id=name, lease=2.0, partitions=4, log_dir=tmp_path
        )

    async def scenario() -> None:
        provider = Provider()
        monkeypatch.setenv(PROVIDER_URL, await provider.start())
        provider.stall()  # charge, then hold the answer: the effect is done, unreported
        nodes = []
        try:
            async with Postgres(dsn, refs.REGISTRY, schema=schema, node=False, partitions=4) as eco:
                first = node("first")
                nodes.append(first)
                orders = [OrderId(f"order-{i}") for i in range(n)]
                await eco.send(*(refs.order(o).place(cents=100 + i) for i, o in enumerate(orders)))
                await eventually(lambda: provider.stalled == n, timeout=60)
                first.kill()  # SIGKILL, mid-effect: every charge made, none answered
                first.wait()
                provider.release()
                performed_by_first = provider.performed
                nodes.append(node("second"))
                states = [await until(eco, o, paid, timeout=60) for o in orders]
                worker = await worker_state(eco, refs.payments())
        finally:
            stop_processes(nodes)
            await provider.stop()
        print(
            f"\nkill test: {n} orders; performed {provider.performed} "
            f"({performed_by_first} by the killed node), applied {provider.applied}, "
            f"duplicates absorbed by the key {provider.duplicates}, "
            f"Charged applied per order {sorted({s.charges_seen for s in states})}, "
            f"worker completed {worker.completed}, late results dropped {worker.duplicates}"
        )
        assert performed_by_first == n
        assert provider.applied == n  # exactly once per order
        assert provider.performed == 2 * n  # at least once: again after the kill
        assert provider.duplicates == n
        assert [s.charges_seen for s in states] == [1] * n
        assert len({s.charge for s in states}) == n
        assert (worker.completed, worker.pending) == (n, ())

    try:
        asyncio.run(scenario())
    finally:
        drop_schemas(dsn, [schema])


# -- the payment deadline: a keyed timer, cancelled once paid ---------------------------


class NaiveOrder(Order):
    """The order with a naive deadline: it expires whatever state it is in."""

    def activate(self, msg: OrderMsg, state: OrderState) -> Activation[OrderState]:
        if isinstance(msg, PaymentTimeout):
            return [], evolve(state, status="expired")
        return super().activate(msg, state)


def paid_then_charged(registry: Registry, faults: Faults) -> set[tuple[str, int]]:
    """Every (status, charges seen) the order can end in when it is placed and
    the charge lands, exploring every order (and, with `late`, the deadline
    falling due while the charge is on its way)."""
    order = refs.order(OrderId("o"))
    report = Simulation(registry).exhaust(
        [order.place(cents=250), order.charged(charge="ch_1")], faults=faults
    )
    assert report.complete
    return {
        (found.outcome.state(order).status, found.outcome.state(order).charges_seen)
        for found in report.outcomes
    }


def test_the_deadline_is_cancelled_once_paid_so_it_never_falls_due() -> None:
    order = refs.order(OrderId("o"))
    report = Simulation(refs.REGISTRY).exhaust([order.place(cents=250), order.charged("ch_1")])
    (found,) = report.outcomes
    assert found.outcome.state(order).status == "paid"
    assert "cancels timer 'payment-timeout'" in str(found.trace)
    assert all(step.kind is not Kind.TICK for step in found.trace)  # nothing left to fall due


def test_exhaust_finds_the_deadline_racing_the_charge_and_the_naive_order_keeps_the_money() -> None:
    late = Faults(late=True)
    # Messages take no time by default: the charge always wins.
    assert paid_then_charged(refs.REGISTRY.replacing(Order, NaiveOrder), Faults()) == {("paid", 1)}
    # With late messages the deadline can fall due first: either it is handled
    # first (expired, then the late charge refunded), or it was due before the
    # cancel and reaches the paid order, which the naive order takes as expiry:
    # charged, and expired.
    assert paid_then_charged(refs.REGISTRY.replacing(Order, NaiveOrder), late) == {
        ("paid", 1),
        ("refunding", 1),
        ("expired", 1),
    }


def test_the_order_ignores_a_deadline_that_was_due_before_it_was_paid() -> None:
    assert paid_then_charged(refs.REGISTRY, Faults(late=True)) == {("paid", 1), ("refunding", 1)}
