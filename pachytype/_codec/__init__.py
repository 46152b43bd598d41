"""The codec: ids, messages, states, addresses and envelopes to bytes and back.

Design note. One `Codec` per registry, built on one cattrs converter with
the orjson backend. Rules:

- **Only registered types are built.** Decoding starts from a type the
  registry names (an entity's message classes, its state type, its id type)
  and follows the declared field types; a tag is looked up in a table, never
  imported or evaluated. Nothing is pickled.
- **Strict shapes.** `int` fields take JSON integers only (not `"5"`, not
  `true`), `str` takes strings, `float` takes numbers, `bool` takes
  booleans; unknown keys are refused. A mismatch is a `DecodeError` naming
  the entity, the id, the path (`$.to[1]`) and the bad value.
- **Messages are a tagged union**: `["Deposit", {"amount": 5}]`, the tag
  being the class name (unique per entity: the generator refuses two
  message classes with the same snake_case name). A union of attrs classes
  inside a message or state is tagged the same way.
- **Ids are canonical text** (they are database keys): a `str` id is
  itself, an `int` its decimal digits, a `UUID` its lowercase hyphenated
  form, an attrs id the compact JSON of its fields with sorted keys. The
  same id always gives the same text; decoding refuses non-canonical text.
  NewTypes are their base type.
- **Addresses** are `[entity type, id text]`; decoding looks the entity type
  up in the registry and rebuilds a `Ref`. A narrowed `Address[Pong]` whose
  `Pong` was imported only under `TYPE_CHECKING` needs no resolution: see
  `pachytype._hints`.
- **Envelopes inside a message or a state** (a worker's pending request,
  an inbox's answer) are `[entity type, id text, delay, [tag, fields]]`,
  the message encoded by its target entity's table.
- **Envelopes** are a one-line JSON header `[entity type, id text, delay
  seconds]`, a newline, then the message bytes, so a store or a router
  reads the target (`envelope_target`) without decoding the body (orjson
  never writes a raw newline).
- **State** is encoded at the entity's current `state_version`; decoding
  takes the stored version, runs the `@upgrade` chain over the raw data
  (`pachytype._versioning`) and then structures it.
- **Bad values are refused here, at encoding**, so at `send` (or, for mail
  an activation sends and states it returns, as that activation's failure:
  a dead letter), never in a store, whatever the ecosystem: an id text
  holding NUL (PostgreSQL cannot store it in text) or a lone surrogate
  (not Unicode: no UTF-8 encoding, SQLite and PostgreSQL refuse it), any
  string holding a lone surrogate, an id text over `MAX_ID_BYTES`, a
  message over `MAX_MESSAGE_BYTES`, a state over `MAX_STATE_BYTES` (sizes
  of the UTF-8/JSON encoding). The error is an `EncodeError` naming the
  entity and the id (`ValueTooLargeError` for sizes).

Speed: the hot path uses a converter without detailed validation; only when
decoding fails is the data structured again with detailed validation, to
say where and what.
"""

from pachytype._codec.codec import Codec
from pachytype._codec.limits import (
    MAX_ID_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_STATE_BYTES,
    storable_text,
)

__all__ = ["MAX_ID_BYTES", "MAX_MESSAGE_BYTES", "MAX_STATE_BYTES", "Codec", "storable_text"]
