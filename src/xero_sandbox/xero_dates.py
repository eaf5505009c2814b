"""Xero's date formats: `/Date(1573755038314+0000)/` is Unix milliseconds (the offset only says in
which zone it was displayed; it does not shift the instant)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime

_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_DATE = date(1970, 1, 1)


def ms_to_xero(ms: int) -> str:
    """`/Date(ms+0000)/` for a Unix-millisecond instant."""
    return f"/Date({ms}+0000)/"


def datetime_to_ms(value: datetime) -> int:
    """Unix milliseconds of an aware datetime."""
    return (value - _EPOCH) // timedelta(milliseconds=1)


def ms_to_datetime(ms: int) -> datetime:
    """The aware UTC datetime of a Unix-millisecond instant."""
    return _EPOCH + timedelta(milliseconds=ms)


def day_to_ms(day: int) -> int:
    """Unix milliseconds of midnight UTC of a day number (days since 1970-01-01)."""
    return day * 86_400_000


def day_to_date(day: int) -> date:
    """The calendar date of a day number."""
    return EPOCH_DATE + timedelta(days=day)


def date_to_day(value: date) -> int:
    """The day number (days since 1970-01-01) of a calendar date."""
    return (value - EPOCH_DATE).days


def parse_xero_date(text: str) -> datetime:
    """Parse `/Date(ms[+-hhmm])/` to an aware UTC datetime (the offset does not shift it)."""
    match = _MS_DATE.match(text)
    if not match:
        raise ValueError(f"not a Xero date: {text!r}")
    return ms_to_datetime(int(match.group(1)))


def parse_http_or_iso_datetime(text: str) -> datetime:
    """Parse an `If-Modified-Since` value: RFC 1123 (`Tue, 15 Nov 1994 08:12:31 GMT`) or ISO 8601
    (`2024-01-31T10:00:00`, naive means UTC, as Xero treats it)."""
    text = text.strip()
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
