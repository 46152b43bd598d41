"""A TCP-like stream through a proxy.

The naive stream: the proxy forwards chunks, the screen appends them as they
come; correct only while the network keeps order, loses nothing and never
repeats itself.

The reliable stream: a client numbers its segments and sends them through
the same proxy; the receiver puts them back in order, ignores repeats and
acks each one; the client resends what is not acked when its timer fires.
The timer is a delayed message to itself (`Tick` after one second): in the
simulation it fires on the virtual clock, instantly, once the system has
nothing else to do, which is exactly when a lost segment would stall it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import assert_never

from attrs import frozen

from examples.tcp import refs
from pachytype import Activation, Address, Entity, Envelope

RESEND_AFTER = timedelta(seconds=1)


@frozen
class Chunk:
    """A piece of text to show."""

    text: str


@frozen
class Relay:
    """Forward `chunk` to `to`."""

    chunk: Chunk
    to: Address[Chunk]


class Screen(Entity[str, Chunk, str]):
    """Shows chunks in arrival order."""

    def init(self, id: str) -> str:
        return ""

    def activate(self, msg: Chunk, state: str) -> Activation[str]:
        return [], state + msg.text


@frozen
class Segment:
    """Text number `seq` of a stream; acks go to `ack_to`."""

    seq: int
    text: str
    ack_to: Address[Ack]


@frozen
class Ack:
    """Segment `seq` arrived."""

    seq: int


@frozen
class Write:
    """Send `text` to the receiver of the same id, through the proxy of the same id."""

    text: str


@frozen
class Tick:
    """The client's resend timer."""


@frozen
class ClientState:
    """Who the client is, the next sequence number, what is not acked yet."""

    me: str
    next_seq: int = 0
    unacked: tuple[Segment, ...] = ()
    timer_set: bool = False


ClientMsg = Write | Ack | Tick


class Client(Entity[str, ClientMsg, ClientState]):
    """Numbers segments, resends the unacked ones every `RESEND_AFTER`."""

    def init(self, id: str) -> ClientState:
        return ClientState(id)

    def activate(self, msg: ClientMsg, state: ClientState) -> Activation[ClientState]:
        match msg:
            case Write(text=text):
                segment = Segment(state.next_seq, text, ack_to=refs.client(state.me))
                unacked = (*state.unacked, segment)
                sends = [_via_proxy(state.me, segment), *_timer(state)]
                return sends, ClientState(state.me, state.next_seq + 1, unacked, True)
            case Ack(seq=seq):
                unacked = tuple(s for s in state.unacked if s.seq != seq)
                return [], ClientState(state.me, state.next_seq, unacked, state.timer_set)
            case Tick():
                if not state.unacked:
                    return [], ClientState(state.me, state.next_seq, (), timer_set=False)
                resend = [_via_proxy(state.me, s) for s in state.unacked]
                again = refs.client(state.me).tick().after(RESEND_AFTER)
                return [*resend, again], state
            case _:
                assert_never(msg)


def _via_proxy(me: str, segment: Segment) -> Envelope[int]:
    return refs.proxy(me).relay_segment(segment=segment, to=refs.receiver(me))


def _timer(state: ClientState) -> list[Envelope[ClientState]]:
    return [] if state.timer_set else [refs.client(state.me).tick().after(RESEND_AFTER)]


@frozen
class RelaySegment:
    """Forward `segment` to `to`."""

    segment: Segment
    to: Address[Segment]


ProxyMsg = Relay | RelaySegment


class Proxy(Entity[str, ProxyMsg, int]):
    """Forwards chunks and segments; counts what it forwarded."""

    def init(self, id: str) -> int:
        return 0

    def activate(self, msg: ProxyMsg, state: int) -> Activation[int]:
        match msg:
            case Relay(chunk=chunk, to=to):
                return [to.post(chunk)], state + 1
            case RelaySegment(segment=segment, to=to):
                return [to.post(segment)], state + 1
            case _:
                assert_never(msg)


@frozen
class ReceiverState:
    """The text so far, the next sequence number expected, segments that came early."""

    text: str = ""
    next_seq: int = 0
    early: tuple[tuple[int, str], ...] = ()


class Receiver(Entity[str, Segment, ReceiverState]):
    """Reassembles the stream in sequence order, once each, and acks everything."""

    def init(self, id: str) -> ReceiverState:
        return ReceiverState()

    def activate(self, msg: Segment, state: ReceiverState) -> Activation[ReceiverState]:
        ack = [msg.ack_to.post(Ack(msg.seq))]
        known = {seq for seq, _ in state.early}
        if msg.seq < state.next_seq or msg.seq in known:
            return ack, state  # a repeat: acked again, shown once
        early = dict([*state.early, (msg.seq, msg.text)])
        text, seq = state.text, state.next_seq
        while seq in early:
            text += early.pop(seq)
            seq += 1
        return ack, ReceiverState(text, seq, tuple(sorted(early.items())))
