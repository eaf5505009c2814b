"""Xero's /Date(ms+offset)/ format, parsed as Xero documents it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from src.xero_sandbox.xero_dates import parse_xero_date


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/Date(1573755038314+0000)/", datetime(2019, 11, 14, 18, 10, 38, 314000, tzinfo=UTC)),
        # The offset says how it was displayed; it does not shift the instant.
        ("/Date(1419937200000+1300)/", datetime(2014, 12, 30, 11, 0, tzinfo=UTC)),
        ("/Date(1439434356790)/", datetime(2015, 8, 13, 2, 52, 36, 790000, tzinfo=UTC)),
    ],
)
def test_xero_dates_parse_as_documented(text: str, expected: datetime) -> None:
    assert parse_xero_date(text) == expected
