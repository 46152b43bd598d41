"""Deterministic simulation: run entities in a seeded, virtual-time world,
explore every delivery order with partial-order reduction, inject drops,
duplicates and reordering, and check CALM properties.

Import the public names from `pachytype` (`Simulation`, `Faults`, ...);
hypothesis strategies live in `pachytype.simulation.strategies`.
"""

from pachytype.simulation._calm import CalmCheck, at_most
from pachytype.simulation._ecosystem import SimulatedEcosystem
from pachytype.simulation._errors import (
    InvariantError,
    LivenessError,
    RunawayError,
    SimulationError,
)
from pachytype.simulation._explore import Found, Search, SimulationReport
from pachytype.simulation._faults import Faults
from pachytype.simulation._simulation import RunResult, Simulation
from pachytype.simulation._stream import Execution, Exploration
from pachytype.simulation._trace import Kind, Outcome, Step, Trace

__all__ = [
    "CalmCheck",
    "Execution",
    "Exploration",
    "Faults",
    "Found",
    "InvariantError",
    "Kind",
    "LivenessError",
    "Outcome",
    "SimulationReport",
    "RunResult",
    "RunawayError",
    "Search",
    "SimulatedEcosystem",
    "Simulation",
    "SimulationError",
    "Step",
    "Trace",
    "at_most",
]
