"""Usernames: a sharded registry of unique names.

A `Shard` (id: its number) owns the names whose stable hash (`zlib.crc32`,
the same on every machine and every run, unlike `hash()`) falls in it, so
no single entity sees every name. A `Signup` (one per user) asks the
name's shard to `Claim` it, giving its own address narrowed to the two
answers, `Address[Claimed | Taken]`; the shard, which handles one message
at a time, grants each name to one user only. `Simulation.exhaust` proves
that two users racing for a name end, in every delivery order, with exactly
one of them holding it.
"""
