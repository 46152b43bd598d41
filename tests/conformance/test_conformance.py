"""The behaviour every ecosystem promises (DESIGN §1), run against each one.

The `ecosystem` fixture (pachytype.testing) is parametrized over every
single-node ecosystem; durable-only promises skip on the others.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from pachytype import (
    ActivationError,
    EcosystemClosedError,
    InitError,
    PachytypeError,
    UnknownEntityError,
    WrongMessageError,
)
from pachytype._address import Ref as _Ref
from pachytype._address import make_envelope, make_ref
from pachytype.testing import EcosystemFactory
from tests.conformance import refs
from tests.conformance.entities import Add, Append, TallyId
from tests.conformance.refs import REGISTRY


def tally(name: str) -> refs.TallyRef:
    return refs.tally(TallyId(name))


async def test_call_returns_the_state_after_the_activation(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        assert await eco.call(tally("a").add(n=2)) == 2
        assert await eco.call(tally("a").add(n=3)) == 5


async def test_unseen_entity_reads_as_its_init_state_without_activation(
    ecosystem: EcosystemFactory,
) -> None:
    async with ecosystem(REGISTRY) as eco:
        assert await eco.state(tally("never-seen")) == 0
        assert await eco.state(refs.log(12)) == ()


async def test_send_is_fire_and_forget_and_settles(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        await eco.send(*(tally(f"t{i % 7}").add(n=1) for i in range(700)))
        await eco.settle()
        states = [await eco.state(tally(f"t{i}")) for i in range(7)]
        assert states == [100] * 7


async def test_concurrent_calls_to_one_entity_see_every_previous_state(
    ecosystem: EcosystemFactory,
) -> None:
    async with ecosystem(REGISTRY) as eco:
        results = await asyncio.gather(*(eco.call(tally("hot").add(n=1)) for _ in range(200)))
        assert sorted(results) == list(range(1, 201))
        assert await eco.state(tally("hot")) == 200


async def test_an_entity_that_raises_keeps_its_state_and_goes_on(
    ecosystem: EcosystemFactory,
) -> None:
    async with ecosystem(REGISTRY) as eco:
        await eco.call(tally("imm").add(n=5))
        with pytest.raises(ActivationError) as info:
            await eco.call(tally("imm").fail(reason="disk on fire"))
        message = str(info.value)
        assert "'tally'" in message and "'imm'" in message
        assert "RuntimeError: disk on fire" in message
        assert "state is unchanged" in message and "dead letters" in message
        assert isinstance(info.value.__cause__, RuntimeError)
        assert await eco.state(tally("imm")) == 5
        assert await eco.call(tally("imm").add(n=1)) == 6


async def test_dead_letters_keep_the_error_and_the_recent_messages(
    ecosystem: EcosystemFactory,
) -> None:
    async with ecosystem(REGISTRY) as eco:
        await eco.call(tally("dl").add(n=1))
        await eco.call(tally("dl").add(n=2))
        with pytest.raises(ActivationError):
            await eco.call(tally("dl").fail(reason="nope"))
        (dead,) = await eco.dead_letters()
        assert dead.to == tally("dl")
        assert dead.error_type == "RuntimeError"
        assert dead.error == "nope"
        assert "RuntimeError: nope" in dead.traceback
        assert dead.state == 3
        assert dead.recent[-1] == refs.tally(TallyId("dl")).fail(reason="nope").message
        assert Add(1) in dead.recent and Add(2) in dead.recent


async def test_a_failed_send_fire_and_forget_goes_to_dead_letters(
    ecosystem: EcosystemFactory,
) -> None:
    async with ecosystem(REGISTRY) as eco:
        await eco.send(tally("ff").add(n=1), tally("ff").fail(reason="x"), tally("ff").add(n=1))
        await eco.settle()
        assert await eco.state(tally("ff")) == 2
        assert [d.error for d in await eco.dead_letters()] == ["x"]


async def test_init_that_raises_is_a_dead_letter_not_a_crash(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        with pytest.raises(ActivationError, match="init refuses the id 'unborn'"):
            await eco.call(tally("unborn").add(n=1))
        assert len(await eco.dead_letters()) == 1
        assert await eco.call(tally("born").add(n=1)) == 1
        with pytest.raises(InitError) as info:
            await eco.state(tally("unborn"))
        assert str(info.value) == (
            "entity 'tally' (id 'unborn') has no state yet and its init(id) raised "
            "ValueError: init refuses the id 'unborn'; fix init, or do not address this id"
        )


async def test_an_invalid_envelope_returned_by_activate_rejects_the_whole_activation(
    ecosystem: EcosystemFactory,
) -> None:
    async with ecosystem(REGISTRY) as eco:
        with pytest.raises(ActivationError, match="cannot receive a Add"):
            await eco.call(tally("bad-out").send_bad())
        assert await eco.state(tally("bad-out")) == 0
        assert await eco.state(refs.log(7)) == ()


async def test_follow_yields_the_current_state_then_every_commit_in_order(
    ecosystem: EcosystemFactory,
) -> None:
    async with ecosystem(REGISTRY) as eco:
        await eco.call(tally("f").add(n=10))
        seen: list[int] = []
        subscribed = asyncio.Event()

        async def watch() -> None:
            async for state in eco.follow(tally("f")):
                seen.append(state)
                subscribed.set()  # the first state is yielded once the follower is registered
                if len(seen) == 4:
                    return

        watcher = asyncio.create_task(watch())
        await asyncio.wait_for(subscribed.wait(), 5)
        for n in (1, 2, 3):
            await eco.call(tally("f").add(n=n))
        await asyncio.wait_for(watcher, 5)
        assert seen == [10, 11, 13, 16]


async def test_followers_keep_following_after_an_error(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        seen: list[int] = []
        subscribed = asyncio.Event()

        async def watch() -> None:
            async for state in eco.follow(tally("fe")):
                seen.append(state)
                subscribed.set()
                if len(seen) == 3:
                    return

        watcher = asyncio.create_task(watch())
        await asyncio.wait_for(subscribed.wait(), 5)
        await eco.call(tally("fe").add(n=1))
        with pytest.raises(ActivationError):
            await eco.call(tally("fe").fail(reason="boom"))
        await eco.call(tally("fe").add(n=1))
        await asyncio.wait_for(watcher, 5)
        assert seen == [0, 1, 2]


async def test_messages_from_one_sender_to_one_receiver_arrive_in_send_order(
    ecosystem: EcosystemFactory,
) -> None:
    async with ecosystem(REGISTRY) as eco:
        values = tuple(range(300))
        await eco.send(
            refs.emitter("e1").emit(to=refs.log(1), values=values[:150]),
            refs.emitter("e1").emit(to=refs.log(1), values=values[150:]),
        )
        await eco.settle()
        assert await eco.state(refs.log(1)) == values
        assert await eco.state(refs.emitter("e1")) == 300


async def test_outside_sends_arrive_in_send_order(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        for v in range(50):
            await eco.send(refs.log(2).append(value=v))
        await eco.settle()
        assert await eco.state(refs.log(2)) == tuple(range(50))


async def test_a_delayed_envelope_arrives_after_its_delay(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        started = time.monotonic()
        await eco.call(refs.emitter("r").remind(to=refs.log(3), value=42, delay_ms=150))
        assert await eco.state(refs.log(3)) == ()
        async for state in eco.follow(refs.log(3)):
            if state:
                assert state == (42,)
                break
        assert time.monotonic() - started >= 0.14


async def test_call_on_a_delayed_envelope_waits_for_the_delivery(
    ecosystem: EcosystemFactory,
) -> None:
    from datetime import timedelta

    async with ecosystem(REGISTRY) as eco:
        started = time.monotonic()
        state = await eco.call(refs.log(4).append(value=1).after(timedelta(milliseconds=100)))
        assert state == (1,)
        assert time.monotonic() - started >= 0.09


async def test_a_message_of_the_wrong_class_is_refused_at_send_and_nothing_is_sent(
    ecosystem: EcosystemFactory,
) -> None:
    async with ecosystem(REGISTRY) as eco:
        bad = make_envelope(refs.log(5), Add(1))
        with pytest.raises(WrongMessageError) as info:
            await eco.send(refs.log(5).append(value=1), bad)
        assert str(info.value) == (
            "entity 'log' (id 5) cannot receive a Add (Add(n=1)): it accepts Append; "
            "send one of those, built with the entity's ref"
        )
        with pytest.raises(WrongMessageError):
            await eco.call(bad)
        await eco.settle()
        assert await eco.state(refs.log(5)) == ()


async def test_an_unknown_entity_type_is_refused_at_send(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        ghost: _Ref[Any, Any] = make_ref(_Ref, "ghost", "g1")
        with pytest.raises(UnknownEntityError) as info:
            await eco.send(ghost.post(Append(1)))
        assert str(info.value).startswith(
            "unknown entity type 'ghost' (id 'g1'): registry of 'tests.conformance' has "
            "emitter, log, tally;"
        )
        with pytest.raises(UnknownEntityError):
            await eco.state(ghost)


async def test_something_that_is_not_an_envelope_is_refused(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        with pytest.raises(TypeError, match="expected an Envelope built by a ref"):
            await eco.send(Append(1))  # type: ignore[arg-type]


async def test_ecosystems_are_isolated(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY, "one") as one, ecosystem(REGISTRY, "two") as two:
        await one.call(tally("iso").add(n=1))
        assert await two.state(tally("iso")) == 0


async def test_a_closed_ecosystem_refuses_work(ecosystem: EcosystemFactory) -> None:
    eco = ecosystem(REGISTRY)
    with pytest.raises(EcosystemClosedError, match="not open"):
        await eco.send(tally("x").add())
    async with eco:
        pass
    with pytest.raises(EcosystemClosedError, match="not open"):
        await eco.call(tally("x").add())


async def test_state_survives_reopening_on_durable_ecosystems(
    ecosystem: EcosystemFactory,
) -> None:
    if not ecosystem.durable:
        pytest.skip(f"{ecosystem.kind} is not durable")
    async with ecosystem(REGISTRY) as eco:
        await eco.call(tally("dur").add(n=7))
        await eco.send(refs.emitter("d").emit(to=refs.log(9), values=(1, 2, 3)))
        await eco.settle()
    async with ecosystem(REGISTRY) as eco:
        assert await eco.state(tally("dur")) == 7
        assert await eco.state(refs.log(9)) == (1, 2, 3)
        assert await eco.call(tally("dur").add(n=1)) == 8


async def test_a_new_state_that_cannot_be_stored_fails_only_its_message(
    ecosystem: EcosystemFactory,
) -> None:
    """Every ecosystem stores (or round-trips) new states through the codec: a
    state of the wrong type fails its message; the others of the batch apply."""
    async with ecosystem(REGISTRY) as eco:
        with pytest.raises(ActivationError, match="cannot be stored") as info:
            await eco.call(tally("sp").spoil())
        assert "'tally' (id 'sp')" in str(info.value)
        assert await eco.state(tally("sp")) == 0
        await eco.send(tally("sp").add(n=1), tally("sp").spoil(), tally("sp").add(n=2))
        await eco.settle()
        assert await eco.state(tally("sp")) == 3
        dead = await eco.dead_letters()
        assert [d.message for d in dead] == [refs.tally(TallyId("sp")).spoil().message] * 2
        assert dead[-1].state == 1
        assert all("cannot be stored" in d.error for d in dead)


async def test_a_dead_letter_can_be_redelivered_or_discarded_once(
    ecosystem: EcosystemFactory,
) -> None:
    async with ecosystem(REGISTRY) as eco:
        await eco.send(tally("rd").fail(reason="first"), tally("rd").fail(reason="second"))
        await eco.settle()
        first, second = await eco.dead_letters()
        await eco.redeliver(first)  # fails again: a new dead letter takes its place
        await eco.settle()
        again = await eco.dead_letters()
        assert [d.error for d in again] == ["second", "first"]
        assert again[-1].seq != first.seq
        await eco.discard(second)
        assert [d.error for d in await eco.dead_letters()] == ["first"]
        for gone, act in ((first, eco.redeliver), (second, eco.discard)):
            with pytest.raises(PachytypeError, match=rf"dead letter #{gone.seq} .*not among"):
                await act(gone)
        assert [d.error for d in await eco.dead_letters()] == ["first"]


async def test_a_redelivered_message_is_applied_after_the_fix(ecosystem: EcosystemFactory) -> None:
    """Redelivery after a fix: here the entity refused to be born; its mail is
    redelivered to the same id once init accepts it (simulated by a new id
    taking the dead letter's message)."""
    async with ecosystem(REGISTRY) as eco:
        with pytest.raises(ActivationError):
            await eco.call(tally("unborn").add(n=4))
        (dead,) = await eco.dead_letters()
        assert dead.message == Add(4)
        await eco.redeliver(dead)  # init still refuses: dead again, nothing lost
        await eco.settle()
        (again,) = await eco.dead_letters()
        assert again.message == Add(4) and again.seq != dead.seq
