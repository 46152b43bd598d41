"""`activate` is a plain function: it cannot await, and it cannot be async."""

from __future__ import annotations

import asyncio

from examples.counter.counter import CounterMsg, Increment
from pachytype import Activation, Ecosystem, Entity


class Sleepy(Entity[str, Increment, int]):
    def activate(self, msg: Increment, state: int) -> Activation[int]:
        await asyncio.sleep(1)  # E: "await" outside coroutine ("async def")  # P: "await" allowed only within async function
        return [], state + 1


class Async(Entity[str, CounterMsg, int]):
    async def activate(self, msg: CounterMsg, state: int) -> Activation[int]:  # E: Return type "Coroutine[Any, Any, tuple[Sequence[Envelope[Any] | CancelTimer], int]]" of "activate" incompatible with return type "tuple[Sequence[Envelope[Any] | CancelTimer], int]" in supertype "pachytype._entity.Entity"  # P: Method "activate" overrides class "Entity" in an incompatible manner
        return [], state


class Chatty(Entity[str, Increment, int]):
    def activate(self, msg: Increment, state: int) -> Activation[int]:
        return [Ecosystem.send], state  # E: List item 0 has incompatible type "def send(  # P: Type "tuple[list[(self: Ecosystem, *envelopes: Envelope[Any]) -> CoroutineType[Any, Any, None]], int]" is not assignable to return type "Activation[int]"
