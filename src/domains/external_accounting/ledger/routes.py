"""What changed in the synced records: the change feed and an invoice's history (members)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query

from src.core.openapi import error_responses
from src.domains.external_accounting.exceptions import InvalidCursor, RecordNotFound
from src.domains.external_accounting.ledger.deps import LedgerReads
from src.domains.external_accounting.ledger.schemas import (
    FEED_CURSOR_EXAMPLE,
    ChangeFeed,
    ChangeOut,
    InvoiceHistory,
    VersionOut,
)
from src.domains.organizations.deps import MEMBER_ERRORS, MemberOfOrg

router = APIRouter(tags=["changes"])


@router.get("/changes", responses=error_responses(*MEMBER_ERRORS, InvalidCursor))
async def list_changes(
    access: MemberOfOrg,
    ledger: LedgerReads,
    cursor: Annotated[
        str | None,
        Query(
            max_length=100,
            description="`next_cursor` of the previous page; none: from the first change",
            examples=[FEED_CURSOR_EXAMPLE],
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size", examples=[100])] = 100,
) -> ChangeFeed:
    """Created, changed and deleted invoices and accounts of the organisation, in the order
    their transactions committed, keyset-paged: consume changes instead of re-reading."""
    page = await ledger.changes(access.organization_id, cursor, limit)
    return ChangeFeed(
        changes=[ChangeOut.model_validate(change) for change in page.changes],
        next_cursor=page.next_cursor,
        has_more=page.has_more,
    )


# Another organisation's invoice is a 404, not a 403: nothing is learnt about it.
@router.get(
    "/invoices/{invoice_id:uuid}/history", responses=error_responses(*MEMBER_ERRORS, RecordNotFound)
)
async def invoice_history(
    invoice_id: Annotated[
        uuid.UUID,
        Path(
            description="The invoice's id here", examples=["5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"]
        ),
    ],
    access: MemberOfOrg,
    ledger: LedgerReads,
) -> InvoiceHistory:
    """Every recorded version of one synced invoice, oldest first: kind, when it was seen, the
    run that wrote it, and the old and new value of each field that changed."""
    invoice, versions = await ledger.invoice_history(access.organization_id, invoice_id)
    return InvoiceHistory(
        invoice_id=invoice.id,
        provider_id=invoice.provider_id,
        version=invoice.version,
        versions=[VersionOut.model_validate(version) for version in versions],
    )
