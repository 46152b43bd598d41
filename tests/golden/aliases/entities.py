"""Entities whose message types are spelled each way the generator accepts."""

from __future__ import annotations

from typing import Optional, TypeAlias, Union

import pachytype
from pachytype import Activation, Entity

from .msgs import Down, Left, Pop, Push, Right, Touch, Up

VerticalMsg: TypeAlias = Up | Down
HorizontalMsg = Union[Left, Right]  # noqa: UP007  # the old spelling, on purpose


class Vertical(Entity[str, VerticalMsg, dict[str, int]]):
    """Counts moves by direction."""

    def init(self, id: str) -> dict[str, int]:
        return {}

    def activate(self, msg: VerticalMsg, state: dict[str, int]) -> Activation[dict[str, int]]:
        match msg:
            case Up():
                return [], {**state, "up": state.get("up", 0) + 1}
            case Down():
                return [], {**state, "down": state.get("down", 0) + 1}


class Horizontal(pachytype.Entity[int, HorizontalMsg, None]):
    """Ids are ints; no `init`: the state is always None."""

    def activate(self, msg: HorizontalMsg, state: None) -> Activation[None]:
        match msg:
            case Left() | Right():
                return [], None


class Stack(Entity[str, Push | Pop, tuple[int, ...]]):
    """The message type is written inline."""

    def init(self, id: str) -> tuple[int, ...]:
        return ()

    def activate(self, msg: Push | Pop, state: tuple[int, ...]) -> Activation[tuple[int, ...]]:
        match msg:
            case Push(value=value):
                return [], (*state, value)
            case Pop():
                return [], state[:-1]


class Seen(Entity[str, Touch, Optional[int]]):  # noqa: UP045  # the old spelling, on purpose
    """A single message class; the state may be None."""

    def activate(self, msg: Touch, state: int | None) -> Activation[int | None]:
        return [], (state or 0) + 1
