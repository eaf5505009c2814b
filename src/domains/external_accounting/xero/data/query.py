"""Xero's query language as the accounting client speaks it: `where` filters and the
If-Modified-Since header."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from email.utils import format_datetime


def where_filter(
    *,
    types: Sequence[str] | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    updated_from: datetime | None = None,
    updated_before: datetime | None = None,
    invoice_id_after: str | None = None,
) -> str | None:
    """Xero's `where` for the given criteria (statuses go in `Statuses`, which Xero prefers).
    `updated_from`/`updated_before` bound `UpdatedDateUTC` to whole seconds, `invoice_id_after`
    pages a busy second by `InvoiceID` (see `iter_invoice_pages`)."""
    clauses: list[str] = []
    if types:
        quoted = [f'Type=="{quote(t)}"' for t in types]
        clauses.append(quoted[0] if len(quoted) == 1 else "(" + " OR ".join(quoted) + ")")
    if date_from is not None:
        clauses.append(
            f"Date>=DateTime({date_from.year},{date_from.month:02d},{date_from.day:02d})"
        )
    if date_to is not None:
        clauses.append(f"Date<=DateTime({date_to.year},{date_to.month:02d},{date_to.day:02d})")
    if updated_from is not None:
        clauses.append(f"UpdatedDateUTC>={_date_time(updated_from)}")
    if updated_before is not None:
        clauses.append(f"UpdatedDateUTC<{_date_time(updated_before)}")
    if invoice_id_after is not None:
        clauses.append(f'InvoiceID>Guid("{quote(invoice_id_after)}")')
    return " AND ".join(clauses) or None


def _date_time(moment: datetime) -> str:
    """Xero's `DateTime(y,m,d,h,mi,s)` literal of an instant, in UTC to the second."""
    m = moment.astimezone(UTC)
    return (
        f"DateTime({m.year},{m.month:02d},{m.day:02d},{m.hour:02d},{m.minute:02d},{m.second:02d})"
    )


def quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def if_modified_since(moment: datetime) -> str:
    """The header value: RFC 1123 in GMT (Xero reads it to the second)."""
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0), usegmt=True)
