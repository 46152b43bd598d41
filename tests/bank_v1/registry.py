"""The registry the version-1 code had (hand-written: same entity type name, `account`)."""

from __future__ import annotations

from typing import Final

import examples.bank.account as _m_bank
import tests.bank_v1.account as _m_v1
from pachytype import EntityType, Registry


def _entity_types() -> list[EntityType]:
    return [
        EntityType(
            entity=_m_v1.Account,
            messages=(_m_bank.Deposit, _m_bank.Transfer, _m_bank.Withdraw),
            state=_m_v1.AccountState,
            id_type=str,
        )
    ]


REGISTRY: Final = Registry("tests.bank_v1", _entity_types, fingerprint="")
