"""An entity whose names are long enough to force each kind of line split."""

from __future__ import annotations

from typing import NewType

from attrs import frozen

from pachytype import Activation, Entity

ReconciliationLedgerIdentifier = NewType("ReconciliationLedgerIdentifier", str)


@frozen
class ReconciliationLedgerSnapshot:
    """The state, with a long name."""

    entries_seen_since_the_last_audit: int = 0


@frozen
class RecordAnAdjustment:
    """Parameters fit on one indented line; the call does not fit on one line."""

    adjustment_amount_in_cents: int
    explanation_for_the_audit_log: str


@frozen
class RecordAnAdjustmentWithEvidenceAttached:
    """Only `self`: the lone parameter goes on its own line."""


@frozen
class Annotate:
    """The call fits on one indented line."""

    note_for_the_auditors_to_read: str
    note_for_the_manager: str = ""


ReconciliationLedgerMessage = RecordAnAdjustment | RecordAnAdjustmentWithEvidenceAttached | Annotate


class ExtremelyLongReconciliationLedgerForTheQuarterlyAudit(
    Entity[
        ReconciliationLedgerIdentifier, ReconciliationLedgerMessage, ReconciliationLedgerSnapshot
    ]
):
    """Counts what it is sent."""

    def init(self, id: ReconciliationLedgerIdentifier) -> ReconciliationLedgerSnapshot:
        return ReconciliationLedgerSnapshot()

    def activate(
        self, msg: ReconciliationLedgerMessage, state: ReconciliationLedgerSnapshot
    ) -> Activation[ReconciliationLedgerSnapshot]:
        seen = state.entries_seen_since_the_last_audit + 1
        return [], ReconciliationLedgerSnapshot(seen)
