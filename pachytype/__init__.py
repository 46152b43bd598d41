"""pachytype: immortal, typed actors for Python.

Declare entities (`Entity[Id, Msg, State]` with a pure `activate`), run
`pachytype generate` for typed refs and a `REGISTRY`, then run them on an
ecosystem: `InMemory`, `LocalDisk` (SQLite), `Simulation`, or `Postgres`.
"""

from typing import TYPE_CHECKING

from pachytype._address import Address, CancelTimer, Envelope, Ref, Request
from pachytype._clock import Clock, ManualClock, SystemClock
from pachytype._deadletter import DeadLetter
from pachytype._ecosystem import Ecosystem
from pachytype._entity import Activation, Entity, Upgrade, upgrade
from pachytype._errors import (
    ActivationError,
    ActivationTimeoutError,
    DeadlineError,
    DecodeError,
    EcosystemClosedError,
    EncodeError,
    FingerprintMismatchError,
    InitError,
    PachytypeError,
    ProjectionError,
    StaleRegistryError,
    StateVersionError,
    StoreLockedError,
    UnknownEntityError,
    VersionSkewError,
    WrongMessageError,
)
from pachytype._event_sourced import Decision, EventSourced, Upcast, upcast
from pachytype._events import StoredEvent
from pachytype._projection import Projection, SqliteProjection
from pachytype._registry import EntityType, Registry
from pachytype._worker import Attempt, Failure, Worker, WorkerState
from pachytype._worker_runner import worker_state
from pachytype.ecosystems._inmemory import InMemory
from pachytype.ecosystems._localdisk import LocalDisk
from pachytype.simulation import (
    CalmCheck,
    Faults,
    InvariantError,
    Outcome,
    RunawayError,
    RunResult,
    Simulation,
    SimulationError,
    SimulationReport,
    Trace,
)

if TYPE_CHECKING:
    from pachytype.ecosystems._postgres import Postgres

__all__ = [
    "Activation",
    "ActivationError",
    "ActivationTimeoutError",
    "Address",
    "Attempt",
    "CalmCheck",
    "CancelTimer",
    "Clock",
    "DeadLetter",
    "DeadlineError",
    "Decision",
    "DecodeError",
    "Ecosystem",
    "EcosystemClosedError",
    "EncodeError",
    "Entity",
    "EntityType",
    "Envelope",
    "EventSourced",
    "Failure",
    "Faults",
    "FingerprintMismatchError",
    "InMemory",
    "InitError",
    "InvariantError",
    "LocalDisk",
    "ManualClock",
    "Outcome",
    "PachytypeError",
    "Postgres",
    "Projection",
    "ProjectionError",
    "Ref",
    "Registry",
    "Request",
    "RunResult",
    "RunawayError",
    "Simulation",
    "SimulationError",
    "SimulationReport",
    "SqliteProjection",
    "StaleRegistryError",
    "StateVersionError",
    "StoreLockedError",
    "StoredEvent",
    "SystemClock",
    "Trace",
    "UnknownEntityError",
    "Upcast",
    "Upgrade",
    "VersionSkewError",
    "Worker",
    "WorkerState",
    "worker_state",
    "WrongMessageError",
    "upcast",
    "upgrade",
]


def __getattr__(name: str) -> object:
    """`pachytype.Postgres`, imported on first use: it loads asyncpg, which a
    program on the other ecosystems never needs (`import pachytype` stays
    free of it; tests/test_public_api.py checks)."""
    if name == "Postgres":
        from pachytype.ecosystems._postgres import Postgres

        globals()["Postgres"] = Postgres  # later lookups find it without this call
        return Postgres
    raise AttributeError(f"module 'pachytype' has no attribute {name!r}")
