"""Declaring entities the way DESIGN §2 shows: int and attrs ids, a union of
messages matched exhaustively, optional state, upgrades, narrowed replies,
delayed envelopes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, NewType

from attrs import frozen

from examples.ping_pong.ping import Pong
from examples.ping_pong.pong import PongerId
from pachytype import Activation, Address, Entity, Envelope, upgrade

SensorId = NewType("SensorId", int)


@frozen
class Reading:
    value: float


@frozen
class Ask:
    reply_to: Address[Pong]


@frozen
class Tick:
    every_s: int


SensorMsg = Reading | Ask | Tick


@frozen
class SensorState:
    last: float | None = None
    count: int = 0


class Sensor(Entity[SensorId, SensorMsg, SensorState]):
    state_version = 2

    def init(self, id: SensorId) -> SensorState:
        return SensorState()

    def activate(self, msg: SensorMsg, state: SensorState) -> Activation[SensorState]:
        match msg:
            case Reading(value=v):
                return [], SensorState(v, state.count + 1)
            case Ask(reply_to=to):
                return [to.post(Pong(n=state.count, by=PongerId("sensor")))], state
            case Tick(every_s=s):
                again = Sensor.address(SensorId(1)).post(Tick(s)).after(timedelta(seconds=s))
                return [again], state

    @upgrade(from_version=1)
    def _count(raw: dict[str, Any]) -> dict[str, Any]:  # P: Type of parameter "raw" must be a supertype of its class "Sensor"
        return {**raw, "count": 0}


@frozen
class Shard:
    region: str
    n: int


@frozen
class Note:
    text: str


class Notes(Entity[Shard, Note, tuple[str, ...] | None]):
    """No `init`: the state starts as None, which the state type allows."""

    def activate(
        self, msg: Note, state: tuple[str, ...] | None
    ) -> tuple[Sequence[Envelope[Any]], tuple[str, ...] | None]:
        return [], (*(state or ()), msg.text)


shard = Notes.address(Shard("eu", 3))
note: Envelope[tuple[str, ...] | None] = shard.post(Note("hi"))
reading: Envelope[SensorState] = Sensor.address(SensorId(7)).post(Reading(1.5))
