"""PostgreSQL, the many-machine ecosystem's adapter. A node's side: `store`
(the `Store` a node's DurableRuntime commits through: ownership news,
wake-ups) and its parts `claims` (taking mail in: claims, recovery pages),
`commit` (the fenced commit), `sql` (statement texts), `holdings` (what a
store holds between calls) and `recent`; `node`, `lease` and `partition` (who
owns which partition, epochs), `deploy` (rolling deploys: who may own a
partition, what may be sent). Every instance's side: `client` (the client
path: group commit of sends and calls, answers), `reply` (call answers in
notifications), `follow`, `reads` (committed states, journals, events) and
`deadletters`. Around them: `schema` (tables, migrations), `inspect` (what
`pachytype inspect` and `migrate` read), `dsn` (secrets kept out of text),
`testing` (test schemas; for the pytest plugin and the tests). The public
face is `pachytype.ecosystems._postgres.Postgres`."""
