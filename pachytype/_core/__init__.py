"""The pure core: every promise of DESIGN §1 about one activation, written once.

No asyncio, no I/O. Every ecosystem (InMemory, LocalDisk, Postgres and the
simulation's world) calls these functions; an ecosystem only decides where
bytes live and when a turn runs.

* `envelopes`: checking envelopes from outside and envelopes returned by
  `activate` (unknown entity type, wrong message class, not an envelope).
* `turn`: one entity handles a slice of its inbox: the new state, the
  routed envelopes, per-message outcomes and failures with the entity's
  recent messages; the rules for init failure, unreadable stored mail and
  a new state that cannot be stored.
* `held`: state that cannot be loaded holds its entity (never activated,
  mail waits, callers get the load error).
"""
