"""Amounts as the console shows them."""

from __future__ import annotations

from decimal import Decimal

from src.domains.console.formatting import history_value, money, quantity


def test_money_has_the_currency_s_places_and_separators_and_loses_no_digit() -> None:
    assert money(Decimal("118180.7800"), "AUD", code=True) == "AUD 118,180.78"
    assert money("118180.78", "aud") == "118,180.78"  # Xero's text reads the same
    assert money(Decimal("12.3456"), "NZD") == "12.3456"  # four places stay four
    assert money(Decimal("1500.0000"), "JPY") == "1,500"
    assert money(Decimal("9316.8000"), "JPY") == "9,316.80"  # cents held: shown as money
    assert money(Decimal("2.5"), "KWD") == "2.500"
    assert money(Decimal("-0.5")) == "-0.50"
    assert money(Decimal("1E+3")) == "1,000.00"
    assert money(None) == ""
    assert money("n/a") == "n/a"


def test_quantities_drop_trailing_zeros_and_history_formats_only_money() -> None:
    assert quantity(Decimal("2.0000")) == "2"
    assert quantity(Decimal("1234.5000")) == "1,234.5"
    assert history_value("amount_due", "118180.7800", "AUD") == "118,180.78"
    assert history_value("reference", "1000.0000", "AUD") == "1000.0000"
    assert history_value("total", None, "AUD") == "—"
