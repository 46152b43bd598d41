"""Small systems for the simulation tests: ping-pong pairs, relays racing to a
log, a failing entity, an alarm (virtual time), a grow-only set, a counter, a
tally (relays racing to it: many orders, one outcome) and a spinner that
never stops (liveness and fairness)."""

from __future__ import annotations

from datetime import timedelta

from attrs import frozen

from pachytype import Activation, Address, Entity


@frozen
class Serve:
    """Start a rally of `rounds` balls with `partner`; `me` is this player."""

    me: Address[Ball]
    partner: Address[Ball]
    rounds: int


@frozen
class Ball:
    """A ball with `left` hits to go; send the next one to `back`, from `here`."""

    left: int
    back: Address[Ball]
    here: Address[Ball]


PlayerMsg = Serve | Ball


class Player(Entity[int, PlayerMsg, int]):
    """Plays ping-pong; its state counts the balls it received."""

    def init(self, id: int) -> int:
        return 0

    def activate(self, msg: PlayerMsg, state: int) -> Activation[int]:
        match msg:
            case Serve(me=me, partner=partner, rounds=rounds):
                return [partner.post(Ball(rounds, back=me, here=partner))], state
            case Ball(left=left, back=back, here=here):
                if left <= 1:
                    return [], state + 1
                return [back.post(Ball(left - 1, back=here, here=back))], state + 1


@frozen
class Append:
    """Append `value` to the log."""

    value: int


class Log(Entity[str, Append, tuple[int, ...]]):
    """Remembers values in arrival order."""

    def init(self, id: str) -> tuple[int, ...]:
        return ()

    def activate(self, msg: Append, state: tuple[int, ...]) -> Activation[tuple[int, ...]]:
        return [], (*state, msg.value)


@frozen
class Forward:
    """Send `Append(value)` to `to`, after `delay_ms` (0: at once)."""

    to: Address[Append]
    value: int
    delay_ms: int = 0


class Relay(Entity[int, Forward, int]):
    """Forwards values; counts what it forwarded."""

    def init(self, id: int) -> int:
        return 0

    def activate(self, msg: Forward, state: int) -> Activation[int]:
        envelope = msg.to.post(Append(msg.value))
        if msg.delay_ms:
            envelope = envelope.after(timedelta(milliseconds=msg.delay_ms))
        return [envelope], state + 1


@frozen
class Add:
    """Add `n`; raise if the total would pass 100."""

    n: int = 1


class Total(Entity[str, Add, int]):
    """A counter that refuses to pass 100 (not idempotent: duplicates count twice)."""

    def init(self, id: str) -> int:
        return 0

    def activate(self, msg: Add, state: int) -> Activation[int]:
        if state + msg.n > 100:
            raise ValueError(f"total would be {state + msg.n}, over 100")
        return [], state + msg.n


@frozen
class Insert:
    """Add `item` to the set."""

    item: str


class Members(Entity[str, Insert, frozenset[str]]):
    """A grow-only set: monotone and idempotent."""

    def init(self, id: str) -> frozenset[str]:
        return frozenset()

    def activate(self, msg: Insert, state: frozenset[str]) -> Activation[frozenset[str]]:
        return [], state | {msg.item}


@frozen
class Hop:
    """Record `value`, then pass it on along `route` (after `delay_ms`, if any)."""

    value: int
    route: tuple[Address[Hop], ...] = ()
    delay_ms: int = 0


class Node(Entity[int, Hop, tuple[int, ...]]):
    """Records what passes through, in arrival order, and passes it on."""

    def init(self, id: int) -> tuple[int, ...]:
        return ()

    def activate(self, msg: Hop, state: tuple[int, ...]) -> Activation[tuple[int, ...]]:
        if not msg.route:
            return [], (*state, msg.value)
        envelope = msg.route[0].post(Hop(msg.value, msg.route[1:], msg.delay_ms))
        if msg.delay_ms:
            envelope = envelope.after(timedelta(milliseconds=msg.delay_ms))
        return [envelope], (*state, msg.value)


@frozen
class Spin:
    """Flip, and spin again: sends itself another `Spin` at `me`."""

    me: Address[Spin]


class Spinner(Entity[str, Spin, bool]):
    """Never stops: each `Spin` flips the state and sends the next one, so
    its worlds go round a cycle of two (busy, while other mail waits)."""

    def init(self, id: str) -> bool:
        return False

    def activate(self, msg: Spin, state: bool) -> Activation[bool]:
        return [msg.me.post(msg)], not state


class Tally(Entity[str, Append, int]):
    """Sums what it is sent: every arrival order ends in the same state."""

    def init(self, id: str) -> int:
        return 0

    def activate(self, msg: Append, state: int) -> Activation[int]:
        return [], state + msg.value
