"""A deliberately livelocking leader election that `Simulation.exhaust(...,
eventually=...)` catches: polite candidates back off forever."""
