"""A venue with one seat and a waiting list, whose forgetful version leaves
a waiting booking pending forever: a liveness bug that
`Simulation.exhaust(..., eventually=scenarios.settled)` finds, with its trace."""
