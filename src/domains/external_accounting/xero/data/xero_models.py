"""Xero's invoices and accounts as typed models (PascalCase aliases). They accept fields the
schema does not list and enum values we have never seen: Xero adds both without notice."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_xero_datetime(value: Any) -> datetime | None:
    """`/Date(1573755038314+0000)/` → aware UTC datetime. The number is Unix milliseconds; the
    offset only says in which zone Xero displayed it and does not shift the instant. ISO strings
    (Xero's `...String` fields) are accepted too; naive ones are UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value)
    match = _MS_DATE.match(text)
    if match:
        return _EPOCH + timedelta(milliseconds=int(match.group(1)))
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _to_date(value: Any) -> date | None:
    moment = parse_xero_datetime(value)
    return moment.date() if moment else None


XeroDateTime = Annotated[datetime | None, BeforeValidator(parse_xero_datetime)]
XeroDate = Annotated[date | None, BeforeValidator(_to_date)]


class XeroModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)


class XeroContact(XeroModel):
    contact_id: str | None = Field(default=None, alias="ContactID")
    name: str | None = Field(default=None, alias="Name")


class XeroLineItem(XeroModel):
    line_item_id: str | None = Field(default=None, alias="LineItemID")
    description: str | None = Field(default=None, alias="Description")
    quantity: Decimal | None = Field(default=None, alias="Quantity")
    unit_amount: Decimal | None = Field(default=None, alias="UnitAmount")
    item_code: str | None = Field(default=None, alias="ItemCode")
    account_code: str | None = Field(default=None, alias="AccountCode")
    account_id: str | None = Field(default=None, alias="AccountID")
    tax_type: str | None = Field(default=None, alias="TaxType")
    tax_amount: Decimal | None = Field(default=None, alias="TaxAmount")
    line_amount: Decimal | None = Field(default=None, alias="LineAmount")
    discount_rate: Decimal | None = Field(default=None, alias="DiscountRate")
    tracking: list[dict[str, Any]] = Field(default_factory=list, alias="Tracking")


class XeroInvoice(XeroModel):
    invoice_id: str = Field(alias="InvoiceID")
    type: str = Field(alias="Type")  # ACCREC, ACCPAY, or a value Xero adds later
    status: str = Field(alias="Status")
    invoice_number: str | None = Field(default=None, alias="InvoiceNumber")
    reference: str | None = Field(default=None, alias="Reference")
    contact: XeroContact | None = Field(default=None, alias="Contact")
    date: XeroDate = Field(default=None, alias="Date")
    due_date: XeroDate = Field(default=None, alias="DueDate")
    fully_paid_on_date: XeroDate = Field(default=None, alias="FullyPaidOnDate")
    line_amount_types: str | None = Field(default=None, alias="LineAmountTypes")
    currency_code: str | None = Field(default=None, alias="CurrencyCode")
    currency_rate: Decimal | None = Field(default=None, alias="CurrencyRate")
    sub_total: Decimal | None = Field(default=None, alias="SubTotal")
    total_tax: Decimal | None = Field(default=None, alias="TotalTax")
    total: Decimal | None = Field(default=None, alias="Total")
    total_discount: Decimal | None = Field(default=None, alias="TotalDiscount")
    amount_due: Decimal | None = Field(default=None, alias="AmountDue")
    amount_paid: Decimal | None = Field(default=None, alias="AmountPaid")
    amount_credited: Decimal | None = Field(default=None, alias="AmountCredited")
    updated_date_utc: XeroDateTime = Field(alias="UpdatedDateUTC")
    line_items: list[XeroLineItem] = Field(default_factory=list, alias="LineItems")


class XeroAccount(XeroModel):
    account_id: str = Field(alias="AccountID")
    code: str | None = Field(default=None, alias="Code")
    name: str | None = Field(default=None, alias="Name")
    type: str | None = Field(default=None, alias="Type")
    class_: str | None = Field(default=None, alias="Class")
    status: str | None = Field(default=None, alias="Status")
    description: str | None = Field(default=None, alias="Description")
    bank_account_number: str | None = Field(default=None, alias="BankAccountNumber")
    bank_account_type: str | None = Field(default=None, alias="BankAccountType")
    currency_code: str | None = Field(default=None, alias="CurrencyCode")
    tax_type: str | None = Field(default=None, alias="TaxType")
    reporting_code: str | None = Field(default=None, alias="ReportingCode")
    reporting_code_name: str | None = Field(default=None, alias="ReportingCodeName")
    system_account: str | None = Field(default=None, alias="SystemAccount")
    enable_payments_to_account: bool | None = Field(default=None, alias="EnablePaymentsToAccount")
    updated_date_utc: XeroDateTime = Field(default=None, alias="UpdatedDateUTC")


class InvoicePage(BaseModel):
    """One page of invoices, with the raw JSON of each (stored verbatim)."""

    invoices: list[XeroInvoice]
    raw: list[dict[str, Any]]
    page: int
    page_count: int | None
    item_count: int | None
