"""The usernames example: a sharded registry where each name has one owner,
whatever the order the shards receive the claims in."""

from __future__ import annotations

import pytest

from examples.usernames.refs import REGISTRY, shard, signup
from examples.usernames.shard import SHARDS, ShardId, ShardState, shard_of
from examples.usernames.signup import SignupState, UserId
from pachytype import ActivationError, Ecosystem, Simulation
from pachytype.simulation import Outcome
from pachytype.testing import EcosystemFactory

ANN, BOB, CAT = UserId("ann"), UserId("bob"), UserId("cat")


async def holder(eco: Ecosystem, name: str) -> dict[str, UserId]:
    """The owners recorded by the shard of `name`."""
    return (await eco.state(shard(shard_of(name)))).owners


async def test_two_users_racing_for_one_name_exactly_one_gets_it(
    ecosystem: EcosystemFactory,
) -> None:
    async with ecosystem(REGISTRY) as eco:
        await eco.send(signup(ANN).choose(name="neo"), signup(BOB).choose(name="neo"))
        await eco.settle()
        ann, bob = await eco.state(signup(ANN)), await eco.state(signup(BOB))
        winner, loser = (ann, bob) if ann.name == "neo" else (bob, ann)
        assert winner == SignupState(winner.me, name="neo")
        assert loser == SignupState(loser.me, refused=("neo",))
        assert await holder(eco, "neo") == {"neo": winner.me}


async def test_a_released_name_can_be_claimed_again(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        await eco.send(signup(ANN).choose(name="neo"))
        await eco.settle()
        await eco.send(signup(BOB).choose(name="neo"))
        await eco.settle()
        assert (await eco.state(signup(BOB))).refused == ("neo",)
        assert await eco.call(signup(ANN).drop()) == SignupState(ANN)
        await eco.settle()
        assert await holder(eco, "neo") == {}
        await eco.send(signup(BOB).choose(name="neo"))
        await eco.settle()
        assert await eco.state(signup(BOB)) == SignupState(BOB, name="neo", refused=("neo",))
        assert await holder(eco, "neo") == {"neo": BOB}


async def test_choosing_a_new_name_frees_the_old_one(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        await eco.send(signup(ANN).choose(name="neo"))
        await eco.settle()
        assert await eco.call(signup(ANN).choose(name="trinity")) == SignupState(
            ANN, name="neo", asking="trinity"
        )
        await eco.settle()
        assert await eco.state(signup(ANN)) == SignupState(ANN, name="trinity")
        assert await holder(eco, "neo") == {}
        assert await holder(eco, "trinity") == {"trinity": ANN}


async def test_an_answer_to_a_cancelled_request_is_given_back(
    ecosystem: EcosystemFactory,
) -> None:
    async with ecosystem(REGISTRY) as eco:
        # Dropped before the shard answers: the late grant is released again.
        await eco.send(signup(ANN).choose(name="neo"), signup(ANN).drop())
        await eco.settle()
        assert await eco.state(signup(ANN)) == SignupState(ANN)
        assert await holder(eco, "neo") == {}


async def test_names_spread_over_shards_and_each_lives_in_its_own(
    ecosystem: EcosystemFactory,
) -> None:
    names = [f"user{i}" for i in range(16)]
    async with ecosystem(REGISTRY) as eco:
        await eco.send(*(signup(UserId(f"u{i}")).choose(name=n) for i, n in enumerate(names)))
        await eco.settle()
        for i, name in enumerate(names):
            assert (await eco.state(signup(UserId(f"u{i}")))).name == name
        owned: dict[str, UserId] = {}
        used = 0
        for number in range(SHARDS):
            state = await eco.state(shard(ShardId(number)))
            assert all(shard_of(n) == number for n in state.owners), state
            used += bool(state.owners)
            owned |= state.owners
        assert owned == {n: UserId(f"u{i}") for i, n in enumerate(names)}
        assert used >= SHARDS // 2, "16 names should land on most of the 8 shards"


def test_the_shard_of_a_name_is_stable_and_in_range() -> None:
    # crc32, unlike hash(), is the same in every process: these never change.
    assert [shard_of(n) for n in ("neo", "trinity", "morpheus", "")] == [3, 5, 0, 0]
    assert {shard_of(f"user{i}") for i in range(1000)} == set(range(SHARDS))


async def test_an_empty_name_is_refused(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        with pytest.raises(ActivationError) as refused:
            await eco.call(signup(ANN).choose(name="  "))
        assert str(refused.value).startswith("entity 'signup' (id 'ann') raised EmptyName")
        assert str(refused.value.error) == (
            "user 'ann' chose an empty username; a username needs at least one character "
            "that is not a space"
        )
        assert await eco.state(signup(ANN)) == SignupState(ANN)


async def test_only_the_owner_can_release_a_name(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        await eco.send(signup(ANN).choose(name="neo"))
        await eco.settle()
        with pytest.raises(ActivationError) as refused:
            await eco.call(shard(shard_of("neo")).release(name="neo", user=BOB))
        assert str(refused.value.error) == (
            "release of 'neo' by user 'bob' refused: the name belongs to another user; "
            "only its owner can release it"
        )
        assert await holder(eco, "neo") == {"neo": ANN}
        # Releasing a free name changes nothing.
        free = shard(shard_of("morpheus"))
        assert await eco.call(free.release(name="morpheus", user=BOB)) == ShardState(
            shard_of("morpheus")
        )


async def test_a_claim_sent_to_the_wrong_shard_is_refused(ecosystem: EcosystemFactory) -> None:
    wrong = ShardId((shard_of("neo") + 1) % SHARDS)
    async with ecosystem(REGISTRY) as eco:
        with pytest.raises(ActivationError) as refused:
            await eco.call(shard(wrong).claim(name="neo", user=ANN, reply_to=signup(ANN)))
        assert str(refused.value.error) == (
            f"name 'neo' belongs to shard {shard_of('neo')}, not shard {wrong}; "
            "address shards with shard_of(name)"
        )
        assert await eco.state(shard(wrong)) == ShardState(wrong)


# -- every delivery order ------------------------------------------------------


def holders(outcome: Outcome, name: str, users: tuple[UserId, ...]) -> list[UserId]:
    """The users whose signup holds `name` in `outcome`."""
    states = [outcome.get(signup(u), SignupState(u)) for u in users]
    return [s.me for s in states if s.name == name]


def test_in_every_delivery_order_exactly_one_of_two_racing_users_wins() -> None:
    def never_two(outcome: Outcome) -> None:
        assert len(holders(outcome, "neo", (ANN, BOB))) <= 1, "two users hold 'neo'"

    report = Simulation(REGISTRY).exhaust(
        [signup(ANN).choose(name="neo"), signup(BOB).choose(name="neo")], invariant=never_two
    )
    assert report.complete, report.summary()
    # Either may win, depending on which claim the shard receives first...
    winners = {tuple(holders(f.outcome, "neo", (ANN, BOB))) for f in report.outcomes}
    assert winners == {(ANN,), (BOB,)}, str(report)
    for found in report.outcomes:
        # ...but in every order exactly one does, the shard agrees, and the
        # other was told the name is taken.
        (winner,) = holders(found.outcome, "neo", (ANN, BOB))
        (loser,) = {ANN, BOB} - {winner}
        assert found.outcome.state(shard(shard_of("neo"))).owners == {"neo": winner}
        assert found.outcome.state(signup(loser)).refused == ("neo",), str(found.trace)


def test_in_every_order_a_name_released_during_a_race_has_one_owner_at_most() -> None:
    sim = Simulation(REGISTRY)
    sim.run([signup(ANN).choose(name="neo")])
    users = (ANN, BOB, CAT)

    def consistent(outcome: Outcome) -> None:
        assert len(holders(outcome, "neo", users)) <= 1, "two users hold 'neo'"

    report = sim.exhaust(
        [
            signup(ANN).drop(),
            signup(BOB).choose(name="neo"),
            signup(CAT).choose(name="neo"),
        ],
        invariant=consistent,
    )
    assert report.complete, report.summary()
    owners: set[tuple[UserId, ...]] = set()
    for found in report.outcomes:
        held = holders(found.outcome, "neo", users)
        recorded = found.outcome.state(shard(shard_of("neo"))).owners
        # The shard's record and the signups agree in every final world.
        assert recorded == ({"neo": held[0]} if held else {}), str(found.trace)
        owners.add(tuple(held))
    # Ann's release may land before, between or after the two claims.
    assert owners == {(), (BOB,), (CAT,)}, str(report)
