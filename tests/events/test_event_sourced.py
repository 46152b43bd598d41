"""Event-sourced entities (`EventSourced`): decide, evolve, events kept with the
activation, state rebuilt from snapshot + events, upcasting, the lock.

Behaviour every ecosystem shares runs over the `ecosystem` fixture; what only
a durable store can show (restarts, snapshots, stored old events, a crash
between acknowledgement and commit) runs on LocalDisk with real reopens and a
SIGKILLed child process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codegen.generate import generate, write
from pachytype import (
    ActivationError,
    EventSourced,
    InMemory,
    LocalDisk,
    PachytypeError,
    Postgres,
    Simulation,
    upcast,
)
from pachytype._cli.check import check
from pachytype._cli.lock import lock
from pachytype._core.journal import ReplayError
from pachytype._postgres.testing import drop_schemas, new_schema_name, require_postgres
from pachytype.testing import EcosystemFactory
from tests.cli.test_check import edit, line_of, run, static_check
from tests.events_pkg import refs
from tests.events_pkg.cart import Added, Cart, CartId, CartState, CheckedOut, Removed
from tests.events_pkg.refs import REGISTRY


def cart(name: str) -> refs.CartRef:
    return refs.cart(CartId(name))


async def events_of(eco: object, ref: refs.CartRef, count: int) -> list[tuple[int, object]]:
    """The first `count` events of `ref` (waits for them: they are committed)."""
    out: list[tuple[int, object]] = []
    async for item in eco.events(ref):  # type: ignore[attr-defined]
        out.append(item)
        if len(out) == count:
            break
    return out


# -- every ecosystem ---------------------------------------------------------------


async def test_decide_then_evolve_gives_the_state_and_keeps_the_events(
    ecosystem: EcosystemFactory,
) -> None:
    async with ecosystem(REGISTRY) as eco:
        c = cart("a")
        assert await eco.call(c.add(item="tea", qty=2)) == CartState({"tea": 2})
        assert await eco.call(c.add(item="jam")) == CartState({"tea": 2, "jam": 1})
        assert await eco.call(c.remove(item="tea")) == CartState({"jam": 1})
        # A message that decides no event changes nothing and keeps nothing.
        assert await eco.call(c.remove(item="absent")) == CartState({"jam": 1})
        assert await events_of(eco, c, 3) == [
            (1, Added("tea", 2)),
            (2, Added("jam", 1)),
            (3, Removed("tea")),
        ]
        assert await eco.state(c) == CartState({"jam": 1})


async def test_followers_see_each_state_the_events_make(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        c = cart("fl")
        await eco.call(c.add(item="tea"))
        seen: list[CartState] = []

        async def follow() -> None:
            async for state in eco.follow(c):
                seen.append(state)
                if state.closed:
                    return

        follower = asyncio.ensure_future(follow())
        while not seen:
            await asyncio.sleep(0)
        await eco.send(c.add(item="jam"), c.remove(item="tea"), c.checkout())
        await asyncio.wait_for(follower, 10)
        assert seen == [
            CartState({"tea": 1}),
            CartState({"tea": 1, "jam": 1}),
            CartState({"jam": 1}),
            CartState({"jam": 1}, closed=True),
        ]


async def test_envelopes_decided_are_delivered(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        await eco.send(cart("b").add(item="x", qty=3), cart("b").checkout())
        await eco.settle()
        assert await eco.state(refs.ledger(0)) == 3
        assert await eco.state(cart("b")) == CartState({"x": 3}, closed=True)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("evolve", "ValueError: quantity must be positive, got 0"),
        ("decide", "CartClosed: cart is checked out; cannot add 'late'"),
        (
            "wrong",
            "decide returned Recorded (Recorded(count=1)) as an event, expected one of "
            "Added | CheckedOut | Removed",
        ),
    ],
)
async def test_a_failure_in_decide_or_evolve_keeps_no_event_and_goes_on(
    ecosystem: EcosystemFactory, message: str, error: str
) -> None:
    async with ecosystem(REGISTRY) as eco:
        c = cart("f")
        await eco.call(c.add(item="tea"))
        if message == "decide":
            await eco.call(c.checkout())
        before = await eco.state(c)
        bad = {"evolve": c.add(item="z", qty=0), "decide": c.add(item="late"), "wrong": c.poke()}
        with pytest.raises(ActivationError) as info:
            await eco.call(bad[message])
        assert error in str(info.value)
        assert "'cart'" in str(info.value) and "'f'" in str(info.value)
        assert await eco.state(c) == before
        (dead,) = await eco.dead_letters()
        assert dead.state == before
        await eco.call(c.remove(item="tea"))  # goes on, numbering after the kept events
        kept = 2 if message == "decide" else 1
        found = await events_of(eco, c, kept + 1)
        assert [seq for seq, _ in found] == list(range(1, kept + 2))
        assert found[-1][1] == Removed("tea")


async def test_a_state_stored_entity_has_no_events(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        with pytest.raises(PachytypeError) as info:
            eco.events(refs.ledger(0))
        assert str(info.value) == (
            "entity 'ledger' (id 0) is not event-sourced, so it has no events: its class "
            "derives from Entity; derive it from EventSourced[Id, Msg, Event, State] to keep "
            "events"
        )


async def test_events_are_round_tripped_through_the_codec_on_inmemory() -> None:
    async with InMemory(REGISTRY) as eco:
        c = cart("rt")
        await eco.call(c.add(item="tea"))
        ((_, event),) = await events_of(eco, c, 1)
        assert event == Added("tea", 1)
        assert type(event) is Added


def test_the_simulation_keeps_each_entitys_events_in_its_world() -> None:
    sim = Simulation(REGISTRY, seed=1)
    result = sim.run([cart("s").add(item="x"), cart("s").checkout()])
    assert result.state(cart("s")) == CartState({"x": 1}, closed=True)
    assert sim.events(cart("s")) == (Added("x", 1), CheckedOut(1))
    steps = [s for s in result.trace if s.to == cart("s")]
    assert [s.events for s in steps] == [(Added("x", 1),), (CheckedOut(1),)]
    assert "events [Added(item='x', qty=1)]" in steps[0].describe()


def test_worlds_with_equal_states_but_different_events_are_told_apart() -> None:
    # add then remove gives the init state again, with two events kept: not
    # the same world as the one where nothing happened.
    one = Simulation(REGISTRY, seed=1)
    one.run([cart("k").add(item="x"), cart("k").remove(item="x")])
    two = Simulation(REGISTRY, seed=1)
    two.run([cart("k").remove(item="x")])
    assert one._world.states == two._world.states
    assert one._world.key() != two._world.key()


# -- LocalDisk: restarts, snapshots, stored events ------------------------------------


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def execute(db: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(db)
    try:
        conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


async def test_state_is_rebuilt_after_a_restart_from_snapshot_and_later_events(
    tmp_path: Path,
) -> None:
    db = tmp_path / "es.db"
    async with LocalDisk(db, REGISTRY) as eco:
        for item in "abcde":
            await eco.call(cart("r").add(item=item))
    # snapshot_every = 3: one snapshot after the third event, events 4 and 5 after it.
    assert rows(db, "SELECT etype, eid, seq, version FROM snapshots") == [("cart", "r", 3, 1)]
    assert rows(db, "SELECT seq FROM events ORDER BY position") == [(1,), (2,), (3,), (4,), (5,)]
    # The events the snapshot covers are not read any more: deleting them
    # changes nothing, so the rebuild starts from the snapshot.
    execute(db, "DELETE FROM events WHERE seq <= 3")
    expected = CartState(dict.fromkeys("abcde", 1))
    async with LocalDisk(db, REGISTRY) as eco:
        assert await eco.state(cart("r")) == expected
        assert await eco.call(cart("r").add(item="f")) == CartState(dict.fromkeys("abcdef", 1))
    assert rows(db, "SELECT seq FROM snapshots") == [(6,)]


async def test_without_a_snapshot_every_event_is_replayed(tmp_path: Path) -> None:
    db = tmp_path / "es.db"
    async with LocalDisk(db, REGISTRY) as eco:
        for item in "abcd":
            await eco.call(cart("n").add(item=item))
    execute(db, "DELETE FROM snapshots")
    async with LocalDisk(db, REGISTRY) as eco:
        assert await eco.call(cart("n").remove(item="a")) == CartState(dict.fromkeys("bcd", 1))


async def test_an_old_stored_event_is_upcast_when_read(tmp_path: Path) -> None:
    db = tmp_path / "es.db"
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.call(cart("u").add(item="new", qty=5))
    # Written by code where Added had no qty (version 1, no version in the data).
    execute(
        db,
        "INSERT INTO events (etype, eid, seq, payload) VALUES ('cart', 'u', 2, ?)",
        b'["Added",{"item":"old"}]',
    )
    async with LocalDisk(db, REGISTRY) as eco:
        assert await eco.state(cart("u")) == CartState({"new": 5, "old": 1})
        assert await events_of(eco, cart("u"), 2) == [(1, Added("new", 5)), (2, Added("old", 1))]
    assert rows(db, "SELECT payload FROM events WHERE seq = 1") == [
        (b'["Added",{"item":"new","qty":5},2]',)
    ]


async def test_an_event_evolve_now_refuses_holds_the_entity_and_its_mail(
    tmp_path: Path,
) -> None:
    db = tmp_path / "es.db"
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.call(cart("h").add(item="tea"))
    execute(
        db,
        "INSERT INTO events (etype, eid, seq, payload) VALUES ('cart', 'h', 2, ?)",
        b'["Added",{"item":"bad","qty":0},2]',
    )
    async with LocalDisk(db, REGISTRY, retry_held=3600) as eco:
        with pytest.raises(ReplayError) as info:
            await eco.state(cart("h"))
        assert str(info.value).startswith(
            "entity 'cart' (id 'h'): replaying event #2 (Added) raised ValueError: quantity "
            "must be positive, got 0; evolve must accept every stored event"
        )
        with pytest.raises(ReplayError):
            await eco.call(cart("h").add(item="jam"))
        await eco.send(cart("h").add(item="waits"))
        assert await eco.call(cart("other").add(item="x")) == CartState({"x": 1})
    # Nothing was written for the held cart: its mail waits, its events are as they were.
    assert rows(db, "SELECT count(*) FROM events WHERE eid = 'h'") == [(2,)]
    execute(db, "DELETE FROM events WHERE eid = 'h' AND seq = 2")  # the operator's fix
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.settle()
        assert await eco.state(cart("h")) == CartState({"tea": 1, "jam": 1, "waits": 1})


CHILD = """
import asyncio, sys
from pachytype import LocalDisk
from tests.events_pkg import refs
from tests.events_pkg.refs import REGISTRY

async def main(db, n):
    async with LocalDisk(db, REGISTRY) as eco:
        while True:
            await eco.send(*(refs.cart(f"c{(n + i) % 5}").add(item=str(n + i)) for i in range(7)))
            n += 7
            print(n, flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def test_events_are_committed_with_the_activation_a_kill_loses_none_acknowledged(
    tmp_path: Path,
) -> None:
    db = tmp_path / "crash.db"
    acknowledged = 0
    for _ in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(db), str(acknowledged)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parent.parent.parent,
        )
        assert child.stdout is not None
        last = acknowledged
        for line in child.stdout:
            last = int(line)
            if last >= acknowledged + 700:
                break
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        acknowledged = last

        async def count() -> tuple[int, int]:
            async with LocalDisk(db, REGISTRY) as eco:
                await eco.settle()
                states = [await eco.state(cart(f"c{i}")) for i in range(5)]
            return sum(len(s.items) for s in states), 0

        # Reopening delivers the sends that were committed but not yet handled.
        items, _ = asyncio.run(count())
        events = rows(db, "SELECT count(*) FROM events")[0][0]
        assert isinstance(events, int)
        # Every acknowledged send is applied once; sends committed after the
        # last line was read (the child ran on until the kill) are applied too.
        assert items >= acknowledged
        assert events == items  # one event per item, each exactly once
        distinct = rows(db, "SELECT count(DISTINCT etype || eid || seq) FROM events")[0][0]
        assert distinct == events
        acknowledged = items  # what the next child adds is counted from here


# -- the lock and check ---------------------------------------------------------------

EVENT_CART = '''\
"""A shopping cart kept as events."""

from __future__ import annotations

from typing import Any

from attrs import frozen

from pachytype import Decision, EventSourced


@frozen
class AddItem:
    """Put an item in the cart."""

    name: str


@frozen
class ItemAdded:
    """An item went in."""

    name: str


@frozen
class CartState:
    """What is in the cart."""

    items: tuple[str, ...] = ()


class Cart(EventSourced[str, AddItem, ItemAdded, CartState]):
    """One cart."""

    def init(self, id: str) -> CartState:
        return CartState()

    def decide(self, msg: AddItem, state: CartState) -> Decision[ItemAdded]:
        return [], [ItemAdded(msg.name)]

    def evolve(self, state: CartState, event: ItemAdded) -> CartState:
        return CartState((*state.items, event.name))
'''


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    package = tmp_path / "shop"
    package.mkdir()
    (package / "__init__.py").write_text('"""A shop."""\n')
    (package / "cart.py").write_text(EVENT_CART)
    write(generate(package))
    assert run(lock, package).exit_code == 0
    return package


def test_the_lock_records_each_event_class_with_its_version(shop: Path) -> None:
    lines = (shop / "pachytype.lock").read_text().splitlines()
    (event,) = [line for line in lines if line.startswith("  event ")]
    assert event.startswith("  event shop.cart.ItemAdded 1 ")
    assert "class shop.cart.ItemAdded attrs" in lines
    assert static_check(shop) == []


def test_an_event_field_with_a_default_needs_no_upcaster(shop: Path) -> None:
    edit(
        shop,
        '    """An item went in."""\n\n    name: str\n',
        '    """An item went in."""\n\n    name: str\n    qty: int = 1\n',
    )
    assert static_check(shop) == [
        f"{shop / 'cart.py'}:{line_of(shop, 'class Cart(')}: entity Cart: event `ItemAdded` "
        "changed compatibly (field `ItemAdded.qty` added with a default: data stored without "
        "it gets the default): its stored events decode with the new code, no upcaster "
        "needed; run `pachytype lock shop` to record it"
    ]
    assert run(lock, shop).exit_code == 0
    assert static_check(shop) == []


def test_a_changed_event_shape_is_refused_until_an_upcaster_converts_it(shop: Path) -> None:
    edit(
        shop,
        '    """An item went in."""\n\n    name: str\n',
        '    """An item went in."""\n\n    name: str\n    qty: int\n',
    )
    at = f"{shop / 'cart.py'}:{line_of(shop, 'class Cart(')}"
    assert static_check(shop) == [
        f"{at}: entity Cart: event `ItemAdded` changed shape (field `ItemAdded.qty` added "
        "without a default: data stored without it would not decode; give it a default): "
        "its events stored at version 1 would not decode; add @upcast(event=ItemAdded, "
        "from_version=1) converting the stored fields to the new shape, then run "
        "`pachytype lock shop`"
    ]
    assert run(lock, shop).exit_code == 1
    edit(
        shop,
        "        return CartState((*state.items, event.name))\n",
        "        return CartState((*state.items, event.name))\n\n"
        "    @upcast(event=ItemAdded, from_version=1)\n"
        "    def _qty(raw: dict[str, Any]) -> dict[str, Any]:\n"
        '        return {**raw, "qty": 1}\n',
    )
    edit(
        shop,
        "from pachytype import Decision, EventSourced\n",
        "from pachytype import Decision, EventSourced, upcast\n",
    )
    assert static_check(shop) == [
        f"{at}: entity Cart: event `ItemAdded` version 2 (its @upcast chain) is not locked "
        "yet: run `pachytype lock shop`"
    ]
    assert run(lock, shop).exit_code == 0
    assert static_check(shop) == []
    versions = [
        line.split()[2]
        for line in (shop / "pachytype.lock").read_text().splitlines()
        if line.startswith("  event ")
    ]
    assert versions == ["1", "2"]  # the history stays


def test_a_removed_event_class_is_refused(shop: Path) -> None:
    edit(
        shop,
        "class Cart(EventSourced[str, AddItem, ItemAdded, CartState]):",
        "class Cart(EventSourced[str, AddItem, AddItem, CartState]):",
    )
    found = static_check(shop)
    assert any(
        "event class `ItemAdded` is locked but gone: its stored events would no longer "
        "decode (events are forever)" in line
        for line in found
    ), found
    assert run(lock, shop).exit_code == 1


def test_switching_an_entity_to_event_sourced_is_refused(tmp_path: Path) -> None:
    from tests.cli.test_check import CART

    package = tmp_path / "shop"
    package.mkdir()
    (package / "__init__.py").write_text('"""A shop."""\n')
    (package / "cart.py").write_text(CART)
    write(generate(package))
    assert run(lock, package).exit_code == 0
    (package / "cart.py").write_text(EVENT_CART)
    write(generate(package))
    found = static_check(package)
    assert any(
        "it was state-stored when locked and is event-sourced now: what is stored for it "
        "(states) would not be read" in line
        for line in found
    ), found


def test_upcast_chains_must_start_at_version_1() -> None:
    with pytest.raises(TypeError) as info:

        class Broken(EventSourced[str, Added, Added, int]):
            @upcast(event=Added, from_version=2)
            def _late(raw: dict[str, object]) -> dict[str, object]:
                return raw

    assert str(info.value) == (
        "entity Broken: the upcasters of event Added must chain from version 1; add "
        "@upcast(event=Added, from_version=1)"
    )


def test_generate_refuses_event_sourced_with_three_type_arguments(tmp_path: Path) -> None:
    package = tmp_path / "shop"
    package.mkdir()
    (package / "__init__.py").write_text('"""A shop."""\n')
    (package / "cart.py").write_text(
        EVENT_CART.replace(
            "EventSourced[str, AddItem, ItemAdded, CartState]",
            "EventSourced[str, AddItem, CartState]",
        )
    )
    result = run(check, package, "--no-mypy")
    assert result.exit_code == 1
    assert (
        "entity Cart: EventSourced takes 4 type arguments (EventSourced[Id, Msg, Event, "
        "State]), got 3" in result.output
    )


def test_on_postgres_events_outlive_their_node_and_a_client_reads_them() -> None:
    """Postgres keeps an event-sourced entity's events in its tables: once the
    node that committed them is gone, a `node=False` client reads them (per
    entity and per type, with their log positions) and the state they make."""
    dsn = require_postgres()
    schema = new_schema_name()

    async def scenario() -> None:
        async with Postgres(dsn, REGISTRY, schema=schema, partitions=2) as eco:
            assert await eco.call(cart("pg").add(item="tea", qty=2)) == CartState({"tea": 2})
            with pytest.raises(ActivationError, match="quantity must be positive"):
                await eco.call(cart("pg").add(item="x", qty=0))
            assert await eco.call(cart("pg").checkout()) == CartState({"tea": 2}, closed=True)
        async with Postgres(dsn, REGISTRY, schema=schema, node=False) as client:
            assert await client.state(cart("pg")) == CartState({"tea": 2}, closed=True)
            assert await events_of(client, cart("pg"), 2) == [
                (1, Added("tea", 2)),
                (2, CheckedOut(2)),
            ]
            async for first in client.events_of(Cart):
                assert (first.position, first.seq, first.event) == (1, 1, Added("tea", 2))
                break

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        drop_schemas(dsn, [schema])


async def test_inspect_shows_events_and_the_rebuilt_state(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pachytype.cli import main

    db = tmp_path / "es.db"
    async with LocalDisk(db, REGISTRY) as eco:
        for item in "abcd":
            await eco.call(cart("i").add(item=item))
    result = CliRunner().invoke(
        main, ["inspect", "--db", str(db), "tests.events_pkg.refs:REGISTRY", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    (entity,) = [e for e in data["entities"] if e["entity_type"] == "cart"]
    assert entity["state"] == repr(CartState(dict.fromkeys("abcd", 1)))
    assert data["events_total"] == 4
    assert [(e["position"], e["id"], e["seq"], e["event"]) for e in data["events"]] == [
        (n, "i", n, repr(Added(item, 1))) for n, item in enumerate("abcd", 1)
    ]
    tables = CliRunner().invoke(
        main,
        ["inspect", "--db", str(db), "tests.events_pkg.refs:REGISTRY"],
        env={"COLUMNS": "200"},
    )
    assert "events (latest 4 of 4, in log order)" in tables.output


# -- the ecosystems agree --------------------------------------------------------------

_ITEMS = st.sampled_from(["tea", "jam", "oat"])
_MESSAGES = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.one_of(
            st.builds(lambda i, q: ("add", i, q), _ITEMS, st.integers(0, 2)),
            st.builds(lambda i: ("remove", i, 0), _ITEMS),
            st.just(("checkout", "", 0)),
        ),
    ),
    max_size=25,
)


def _envelope(name: str, what: tuple[str, str, int]) -> Any:
    kind, item, qty = what
    if kind == "add":
        return cart(name).add(item=item, qty=qty)
    if kind == "remove":
        return cart(name).remove(item=item)
    return cart(name).checkout()


async def _outcome(eco: Any, steps: list[tuple[str, tuple[str, str, int]]]) -> object:
    """States, events, dead letters and the ledger after `steps`, then one more
    checkout per cart (its `CheckedOut` is the last event each stream waits for)."""
    names = ("a", "b")
    logs: dict[str, list[object]] = {n: [] for n in names}
    checkouts = {n: 1 + sum(1 for m, w in steps if m == n and w[0] == "checkout") for n in names}

    async def collect(name: str) -> None:
        seen = 0
        async for _, event in eco.events(cart(name)):
            logs[name].append(event)
            seen += isinstance(event, CheckedOut)
            if seen == checkouts[name]:
                return

    readers = [asyncio.ensure_future(collect(n)) for n in names]
    for name, what in steps:
        with contextlib.suppress(ActivationError):  # failures are part of the outcome
            await eco.call(_envelope(name, what))
    for name in names:
        await eco.call(cart(name).checkout())
    await asyncio.wait_for(asyncio.gather(*readers), 30)
    states = {n: await eco.state(cart(n)) for n in names}
    dead = [(d.to.id, repr(d.message)) for d in await eco.dead_letters()]
    await eco.settle()
    return states, logs, dead, await eco.state(refs.ledger(0))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_MESSAGES)
async def test_inmemory_localdisk_and_the_simulation_keep_the_same_events(
    steps: list[tuple[str, tuple[str, str, int]]],
) -> None:
    outcomes = []
    with tempfile.TemporaryDirectory() as tmp:
        for eco in (
            InMemory(REGISTRY),
            LocalDisk(Path(tmp) / "d.db", REGISTRY),
            Simulation(REGISTRY).ecosystem(),
        ):
            async with eco:
                outcomes.append(await _outcome(eco, steps))
        # LocalDisk again after a reopen: rebuilt from snapshots and events.
        async with LocalDisk(Path(tmp) / "d.db", REGISTRY) as eco:
            rebuilt = {n: await eco.state(cart(n)) for n in ("a", "b")}
    assert outcomes[0] == outcomes[1] == outcomes[2]
    assert rebuilt == outcomes[0][0]  # type: ignore[index]
