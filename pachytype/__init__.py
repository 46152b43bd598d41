"""pachytype: immortal, typed actors for Python.

Declare entities (`Entity[Id, Msg, State]` with a pure `activate`), run
`pachytype generate` for typed refs and a `REGISTRY`, then run them on an
ecosystem: `InMemory`, `LocalDisk` (SQLite), `Simulation`, or `Postgres`.
"""

from typing import TYPE_CHECKING, Any

from pachytype._address import Address, Envelope, Ref, Request
from pachytype._clock import Clock, ManualClock, SystemClock
from pachytype._deadletter import DeadLetter
from pachytype._ecosystem import Ecosystem
from pachytype._entity import Activation, Entity, Upgrade, upgrade
from pachytype._errors import (
    ActivationError,
    ActivationTimeoutError,
    DatabaseFileError,
    DeadlineError,
    DecodeError,
    EcosystemClosedError,
    EncodeError,
    FingerprintMismatchError,
    InitError,
    PachytypeError,
    PoisonMessageError,
    StaleRegistryError,
    StateVersionError,
    UnknownEntityError,
    ValueTooLargeError,
    WrongMessageError,
)
from pachytype._registry import EntityType, Registry
from pachytype._sqlite import StoreLockedError
from pachytype._worker import Attempt, Failure, Worker, WorkerState
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


def __getattr__(name: str) -> Any:
    # Postgres is imported when first used, so `import pachytype` does not
    # import asyncpg (nor pay for it) in programs that never touch PostgreSQL.
    if name == "Postgres":
        from pachytype.ecosystems._postgres import Postgres

        return Postgres
    raise AttributeError(f"module 'pachytype' has no attribute {name!r}")


__all__ = [
    "Activation",
    "ActivationError",
    "ActivationTimeoutError",
    "Address",
    "Attempt",
    "CalmCheck",
    "Clock",
    "DatabaseFileError",
    "DeadLetter",
    "DeadlineError",
    "DecodeError",
    "Ecosystem",
    "EcosystemClosedError",
    "EncodeError",
    "Entity",
    "EntityType",
    "Envelope",
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
    "PoisonMessageError",
    "Postgres",
    "Ref",
    "Registry",
    "Request",
    "RunResult",
    "RunawayError",
    "Simulation",
    "SimulationError",
    "SimulationReport",
    "StaleRegistryError",
    "StateVersionError",
    "StoreLockedError",
    "SystemClock",
    "Trace",
    "UnknownEntityError",
    "Upgrade",
    "ValueTooLargeError",
    "Worker",
    "WorkerState",
    "WrongMessageError",
    "upgrade",
]
