"""The pure core's turn (`pachytype._core.turn`): one table of cases, each a
slice of an entity's inbox and what every ecosystem must make of it."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import pytest
from attrs import frozen

from pachytype._codec import Codec
from pachytype._core.envelopes import checker
from pachytype._core.turn import RECENT, UNBORN, Unreadable, run_turn
from pachytype._errors import DecodeError, PachytypeError, WrongMessageError
from tests.conformance import refs
from tests.conformance.entities import Add, Append, Emit, Fail, SendBad, Spoil, TallyId
from tests.conformance.refs import REGISTRY

CODEC = Codec(REGISTRY)
UNREADABLE = Unreadable(b'["Gone",{}]', DecodeError("tally", "t", "message", "$", "gone", [], ""))


def round_trip(state: object) -> object:
    """What LocalDisk and Postgres require of a new state: it is stored and read back."""
    return CODEC.decode_state("tally", "t", CODEC.encode_state("tally", state), 1)


@frozen
class Case:
    name: str
    start: object
    messages: Sequence[object]
    state: object  # after the slice
    changed: bool
    failed: dict[int, type[Exception]]  # index -> error class
    states: list[object]  # after each message
    store: bool = False
    id: str = "t"


CASES = [
    Case("all apply", UNBORN, [Add(1), Add(2)], 3, True, {}, [1, 3]),
    Case(
        "a failure keeps the state and the others go on",
        10,
        [Add(1), Fail("x"), Add(2)],
        13,
        True,
        {1: RuntimeError},
        [11, 11, 13],
    ),
    Case(
        "init raising fails every message, the entity stays unborn",
        UNBORN,
        [Add(1), Add(2)],
        UNBORN,
        False,
        {0: ValueError, 1: ValueError},
        [None, None],
        id="unborn",
    ),
    Case(
        "a bad returned envelope fails its activation whole",
        0,
        [SendBad(), Add(1)],
        1,
        True,
        {0: WrongMessageError},
        [0, 1],
    ),
    Case(
        "an unstorable state fails only its message",
        0,
        [Add(1), Spoil(), Add(2)],
        3,
        True,
        {1: PachytypeError},
        [1, 1, 3],
        store=True,
    ),
    Case(
        "unreadable mail fails at its place",
        0,
        [Add(1), UNREADABLE, Add(2)],
        3,
        True,
        {1: DecodeError},
        [1, 1, 3],
    ),
    Case("nothing changed", 5, [Fail("a")], 5, False, {0: RuntimeError}, [5]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_turn(case: Case) -> None:
    recent: deque[object] = deque(maxlen=RECENT)
    turn = run_turn(
        REGISTRY.types["tally"],
        refs.tally(TallyId(case.id)),
        case.start,
        case.messages,
        recent,
        checker(REGISTRY),
        store_state=round_trip if case.store else None,
        keep_states=True,
    )
    assert turn.state == case.state
    assert turn.changed is case.changed
    assert {f.index: type(f.error) for f in turn.failures} == case.failed
    assert turn.states == case.states
    assert list(recent) == list(case.messages)
    for failure in turn.failures:
        assert failure.recent == tuple(case.messages[: failure.index + 1])
        assert failure.message is case.messages[failure.index]
    if case.store and case.changed:
        assert turn.stored == case.state


def test_an_unstorable_state_says_which_entity_and_what_to_do() -> None:
    turn = run_turn(
        REGISTRY.types["tally"],
        refs.tally(TallyId("s")),
        4,
        [Spoil()],
        deque(),
        checker(REGISTRY),
        store_state=round_trip,
    )
    (failure,) = turn.failures
    assert str(failure.error).startswith(
        "entity 'tally' (id 's') returned a new state that cannot be stored ("
    )
    assert "its state is unchanged. Make the state a value of its declared state type" in str(
        failure.error
    )
    assert isinstance(failure.error.__cause__, DecodeError)
    assert failure.state == 4 and not turn.changed


@pytest.mark.parametrize("messages", [[Fail("x")], [Spoil()], [Spoil(), Add(1)]])
def test_a_first_message_that_fails_was_handled_in_the_init_state(messages: list[Any]) -> None:
    """A dead letter's state is the state its message was handled in: for a
    new entity that is its init state, whether activate raised or returned a
    state that cannot be stored (found by the differential test: the latter
    said None on InMemory, LocalDisk and Postgres, 0 on the simulation)."""
    turn = run_turn(
        REGISTRY.types["tally"],
        refs.tally(TallyId("new")),
        UNBORN,
        messages,
        deque(),
        checker(REGISTRY),
        store_state=round_trip,
    )
    assert [(f.index, f.state) for f in turn.failures] == [(0, 0)]


def test_envelopes_of_successful_activations_are_routed_in_order() -> None:
    log = refs.log(1)
    turn = run_turn(
        REGISTRY.types["emitter"],
        refs.emitter("e"),
        UNBORN,
        [Emit(log, (1, 2)), Emit(log, (3,))],
        deque(),
        checker(REGISTRY),
    )
    assert [(to, message) for to, _, message, _, _ in turn.routed] == [
        (log, Append(1)),
        (log, Append(2)),
        (log, Append(3)),
    ]
    assert turn.state == 3 and turn.states is None  # states only when asked for


def test_a_failure_keeps_the_last_ten_messages() -> None:
    messages: list[Any] = [Add(i) for i in range(15)] + [Fail("late")]
    recent: deque[object] = deque(maxlen=RECENT)
    turn = run_turn(
        REGISTRY.types["tally"], refs.tally(TallyId("r")), 0, messages, recent, checker(REGISTRY)
    )
    (failure,) = turn.failures
    assert failure.recent == tuple(messages[-RECENT:])
    assert list(recent) == messages[-RECENT:]
