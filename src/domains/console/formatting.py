"""How the console shows amounts: in the currency's minor units with thousands separators, and
never fewer digits than the value holds (Xero keeps up to four places; rounding them away on
screen would show a different number from the one stored)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

# ISO 4217 minor units of the currencies Xero supports that do not have two.
_MINOR_UNITS = {
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND"), 0
    ),
    **dict.fromkeys(("VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}

# The invoice fields (as the history names them) that hold money in the invoice's currency.
MONEY_FIELDS = frozenset(
    (
        "sub_total",
        "total_tax",
        "total",
        "total_discount",
        "amount_due",
        "amount_paid",
        "amount_credited",
    )
)


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _places(amount: Decimal, least: int) -> int:
    """`least`, or more where the value has more significant decimal places."""
    exponent = amount.normalize().as_tuple().exponent
    held = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return max(least, held)


def money(value: Any, currency: str | None = None, *, code: bool = False) -> str:
    """`118180.7800` in AUD is `118,180.78` (`AUD 118,180.78` with `code`); `1.2345` stays
    `1.2345`; JPY has no decimals, but a JPY amount held with some is `9,316.80`. Text that is
    not a number is shown as it is."""
    amount = _decimal(value)
    if amount is None:
        return "" if value is None else str(value)
    currency = (currency or "").upper()
    minor = _MINOR_UNITS.get(currency, 2)
    places = _places(amount, minor)
    if places > minor:
        # More digits than the currency has (Xero keeps four): as a money amount, at least two.
        places = max(places, 2)
    text = f"{amount:,.{places}f}"
    return f"{currency} {text}" if code and currency else text


def quantity(value: Any) -> str:
    """A quantity as exactly as it is held, without trailing zeros: `2.0000` is `2`."""
    amount = _decimal(value)
    if amount is None:
        return "" if value is None else str(value)
    return f"{amount:,.{_places(amount, 0)}f}"


def history_value(field: str, value: Any, currency: str | None) -> str:
    """A value of an invoice's recorded version: money in its currency, the rest as recorded."""
    if value is None:
        return "—"
    if field in MONEY_FIELDS:
        return money(value, currency)
    return str(value)
