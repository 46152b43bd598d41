"""PostgreSQL, the many-machine ecosystem's adapter: `store` (the `Store` a node's
DurableRuntime commits through: claims, the fenced commit, wake-ups), `lease`
and `partition` (who owns which partition, epochs), `deploy` (rolling deploys:
who may own a partition, what may be sent), `schema` (tables, migrations),
`reply` (call answers in notifications), `inspect` (what `pachytype inspect`
and `migrate` read), `dsn` (secrets kept out of text), `testing` (test
schemas; for the pytest plugin and the tests). The public face is
`pachytype.ecosystems._postgres.Postgres`."""
