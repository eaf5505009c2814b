"""Dependencies of the ledger's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from src.core.deps import SessionDep
from src.domains.external_accounting.ledger.service import LedgerService


def ledger_service(session: SessionDep) -> LedgerService:
    """The read service on the request's session."""
    return LedgerService(session)


LedgerReads = Annotated[LedgerService, Depends(ledger_service)]
