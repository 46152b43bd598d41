"""The async runtime: `dispatch` (Runtime: one task, a ready queue, slices
through the core's turn; InMemory runs it) and `durable` (DurableRuntime:
group commits over the `Store` interface of `pachytype._store`; LocalDisk and
Postgres nodes run it)."""
