"""Codec throughput: encode + decode of messages, beside a raw orjson round trip.

* `codec.roundtrip`: `Codec.encode_message` then `decode_message` of the
  bank's `Transfer(amount, to)` (ints and a NewType id), messages/s.
  Baseline: `orjson.loads(orjson.dumps(d))` of the same fields as a plain
  dict, the least any JSON codec must do, measured in the same run.
* `codec.roundtrip_address`: the same for ping-pong's `Ping(n, reply_to)`,
  whose narrowed address is encoded as `[entity type, id text]` and rebuilt
  as a ref on decode. Baseline: the equivalent nested dict/list.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import orjson

from benchmarks._record import Record
from examples.bank import refs as bank
from examples.bank.account import AccountId, Transfer
from examples.ping_pong import refs as ping_pong
from examples.ping_pong.ping import PingerId
from examples.ping_pong.pong import Ping
from pachytype._codec import Codec

N = 100_000
REPEAT = 5


def _best(work: Callable[[], None]) -> float:
    """Messages per second, best of REPEAT runs of N round trips."""
    timings = []
    for _ in range(REPEAT):
        gc.collect()
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return N / min(timings)


def _codec_loop(codec: Codec, entity_type: str, message: object) -> Callable[[], None]:
    encode, decode = codec.encode_message, codec.decode_message

    def work() -> None:
        decoded: object = None
        for _ in range(N):
            decoded = decode(entity_type, encode(entity_type, message))
        assert decoded == message

    return work


def _orjson_loop(value: object) -> Callable[[], None]:
    dumps, loads = orjson.dumps, orjson.loads

    def work() -> None:
        decoded: object = None
        for _ in range(N):
            decoded = loads(dumps(value))
        assert decoded == value

    return work


def run() -> list[Record]:
    """Measure both workloads and their baselines."""
    transfer = Transfer(amount=2_500, to=AccountId("bob"))
    ping = Ping(n=7, reply_to=ping_pong.pinger(PingerId("alice")))
    cases = [
        (
            "codec.roundtrip",
            Codec(bank.REGISTRY),
            "account",
            transfer,
            {"amount": 2_500, "to": "bob"},
        ),
        (
            "codec.roundtrip_address",
            Codec(ping_pong.REGISTRY),
            "ponger",
            ping,
            {"n": 7, "reply_to": ["pinger", "alice"]},
        ),
    ]
    records = []
    for name, codec, entity_type, message, plain in cases:
        ours = _best(_codec_loop(codec, entity_type, message))
        raw = _best(_orjson_loop(plain))
        records.append(
            Record(
                name,
                ours,
                "messages/s",
                "orjson dict round trip",
                raw,
                f"encode+decode of {type(message).__name__}, validated",
            )
        )
    return records
