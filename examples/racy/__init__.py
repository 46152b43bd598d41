"""A deliberately racy system (a lost update) that `Simulation.exhaust` catches."""
