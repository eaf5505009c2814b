"""Xero's invoices and accounts as typed records, decoded straight from the response bytes.

msgspec decodes each money field from its JSON number text into an exact `Decimal` (no float on
the way) and each invoice's own bytes are kept verbatim as its raw document, so nothing is
re-serialised. Fields the schema does not list and enum values we have never seen are accepted:
Xero adds both without notice. Xero's `/Date(...)/` strings become aware UTC datetimes."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec

from src.core.database import JsonText

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Struct fields named `date` would shadow the type inside the class body's annotations.
_Date = date


def parse_xero_datetime(value: Any) -> datetime | None:
    """`/Date(1573755038314+0000)/` → aware UTC datetime. The number is Unix milliseconds; the
    offset only says in which zone Xero displayed it and does not shift the instant. ISO strings
    (Xero's `...String` fields) are accepted too; naive ones are UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value)
    if text.startswith("/Date(") and text.endswith(")/"):
        number = text[6:-2]
        # The offset, when present, starts at the last sign after the first digit.
        cut = max(number.rfind("+"), number.rfind("-"))
        if cut > 0:
            number = number[:cut]
        try:
            millis = int(number)
        except ValueError:
            raise ValueError(f"not a Xero date: {text!r}") from None
        # Integer arithmetic (no float ever touches the milliseconds), and a third quicker
        # than `fromtimestamp`: this runs for every invoice of every page.
        return _EPOCH + timedelta(milliseconds=millis)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@functools.lru_cache(maxsize=8192)
def _to_date(value: str | None) -> date | None:
    # An organisation's invoices share a few thousand distinct dates: parse each once.
    moment = parse_xero_datetime(value)
    return moment.date() if moment else None


def _field(name: str, default: Any = None) -> Any:
    return msgspec.field(default=default, name=name)


# `gc=False` on what a page decodes 1,000s of: untracked by the cycle collector, which need
# never walk them (they hold strings, numbers and each other, never a cycle).
class XeroContact(msgspec.Struct, frozen=True, gc=False):
    contact_id: str | None = _field("ContactID")
    name: str | None = _field("Name")


class XeroLineItem(msgspec.Struct, frozen=True, gc=False):
    line_item_id: str | None = _field("LineItemID")
    description: str | None = _field("Description")
    quantity: Decimal | None = _field("Quantity")
    unit_amount: Decimal | None = _field("UnitAmount")
    item_code: str | None = _field("ItemCode")
    account_code: str | None = _field("AccountCode")
    account_id: str | None = _field("AccountID")
    tax_type: str | None = _field("TaxType")
    tax_amount: Decimal | None = _field("TaxAmount")
    line_amount: Decimal | None = _field("LineAmount")
    discount_rate: Decimal | None = _field("DiscountRate")
    # Stored as Xero sent it (a JSON array of tracking categories); never parsed.
    tracking: msgspec.Raw = msgspec.field(
        default_factory=lambda: msgspec.Raw(b"[]"), name="Tracking"
    )


class XeroInvoice(msgspec.Struct, kw_only=True, gc=False):
    """One invoice. Dates arrive as Xero strings (`*_text`) and are parsed once, after decoding."""

    invoice_id: str = _field("InvoiceID", msgspec.NODEFAULT)
    type: str = _field("Type", msgspec.NODEFAULT)  # ACCREC, ACCPAY, or a value Xero adds later
    status: str = _field("Status", msgspec.NODEFAULT)
    invoice_number: str | None = _field("InvoiceNumber")
    reference: str | None = _field("Reference")
    contact: XeroContact | None = _field("Contact")
    date_text: str | None = _field("Date")
    due_date_text: str | None = _field("DueDate")
    fully_paid_on_date_text: str | None = _field("FullyPaidOnDate")
    line_amount_types: str | None = _field("LineAmountTypes")
    currency_code: str | None = _field("CurrencyCode")
    currency_rate: Decimal | None = _field("CurrencyRate")
    sub_total: Decimal | None = _field("SubTotal")
    total_tax: Decimal | None = _field("TotalTax")
    total: Decimal | None = _field("Total")
    total_discount: Decimal | None = _field("TotalDiscount")
    amount_due: Decimal | None = _field("AmountDue")
    amount_paid: Decimal | None = _field("AmountPaid")
    amount_credited: Decimal | None = _field("AmountCredited")
    updated_date_text: str = _field("UpdatedDateUTC", msgspec.NODEFAULT)
    line_items: list[XeroLineItem] = msgspec.field(default_factory=list, name="LineItems")
    # Parsed from the texts above; never read from the JSON (Xero has no such keys).
    updated_date_utc: datetime = _field("_ledgersync_updated", _EPOCH)
    date: _Date | None = _field("_ledgersync_date")
    due_date: _Date | None = _field("_ledgersync_due_date")
    fully_paid_on_date: _Date | None = _field("_ledgersync_fully_paid_on")

    def __post_init__(self) -> None:
        updated = parse_xero_datetime(self.updated_date_text)
        if updated is None:
            raise ValueError("UpdatedDateUTC is empty")
        self.updated_date_utc = updated
        self.date = _to_date(self.date_text)
        self.due_date = _to_date(self.due_date_text)
        self.fully_paid_on_date = _to_date(self.fully_paid_on_date_text)


class XeroAccount(msgspec.Struct, kw_only=True):
    account_id: str = _field("AccountID", msgspec.NODEFAULT)
    code: str | None = _field("Code")
    name: str | None = _field("Name")
    type: str | None = _field("Type")
    class_: str | None = _field("Class")
    status: str | None = _field("Status")
    description: str | None = _field("Description")
    bank_account_number: str | None = _field("BankAccountNumber")
    bank_account_type: str | None = _field("BankAccountType")
    currency_code: str | None = _field("CurrencyCode")
    tax_type: str | None = _field("TaxType")
    reporting_code: str | None = _field("ReportingCode")
    reporting_code_name: str | None = _field("ReportingCodeName")
    system_account: str | None = _field("SystemAccount")
    enable_payments_to_account: bool | None = _field("EnablePaymentsToAccount")
    updated_date_text: str | None = _field("UpdatedDateUTC")
    updated_date_utc: datetime | None = _field("_ledgersync_updated")

    def __post_init__(self) -> None:
        self.updated_date_utc = parse_xero_datetime(self.updated_date_text)


class XeroAllocatedInvoice(msgspec.Struct, frozen=True):
    invoice_id: str | None = _field("InvoiceID")
    invoice_number: str | None = _field("InvoiceNumber")


class XeroAllocation(msgspec.Struct, frozen=True):
    """Part of a credit note applied to an invoice (its `AmountCredited` and `AmountDue`)."""

    amount: Decimal | None = _field("Amount")
    date_text: str | None = _field("Date")
    invoice: XeroAllocatedInvoice | None = _field("Invoice")


class XeroCreditNote(msgspec.Struct, kw_only=True):
    """What a credit note event needs of the credit note: which invoices it is allocated to."""

    credit_note_id: str = _field("CreditNoteID", msgspec.NODEFAULT)
    type: str | None = _field("Type")
    status: str | None = _field("Status")
    allocations: list[XeroAllocation] = msgspec.field(default_factory=list, name="Allocations")

    def allocated_invoice_ids(self) -> list[str]:
        """The invoices this credit note is allocated to (each once)."""
        ids = (a.invoice.invoice_id for a in self.allocations if a.invoice is not None)
        return list(dict.fromkeys(i for i in ids if i))


class _Pagination(msgspec.Struct):
    page_count: int | None = _field("pageCount")
    item_count: int | None = _field("itemCount")


class _InvoicesEnvelope(msgspec.Struct):
    invoices: list[msgspec.Raw] = msgspec.field(default_factory=list, name="Invoices")
    pagination: _Pagination | None = _field("pagination")


class _AccountsEnvelope(msgspec.Struct):
    accounts: list[msgspec.Raw] = msgspec.field(default_factory=list, name="Accounts")


class _CreditNotesEnvelope(msgspec.Struct):
    credit_notes: list[XeroCreditNote] = msgspec.field(default_factory=list, name="CreditNotes")


class XeroDataInvalid(ValueError):
    """A well-formed JSON body whose records do not have the shape Xero documents."""


@dataclass
class XeroInvoicePage:
    """One page of invoices, each with its verbatim JSON (stored as the raw document)."""

    invoices: list[XeroInvoice]
    raw: list[JsonText]
    page: int
    page_count: int | None
    item_count: int | None
    # Where paging can restart (an If-Modified-Since) without missing anything once this page
    # and those before it are stored: a checkpoint's position, and an incremental cursor.
    resume_from: datetime | None = None
    # Invoices of the same keyset left after this page (Xero's `pagination.itemCount` less the
    # page); None where unknown (a busy second's pages, paged by InvoiceID).
    remaining: int | None = None
    # How long decoding the body took (this process's CPU, not Xero's latency).
    decode_s: float = 0.0


_invoice_decoder = msgspec.json.Decoder(XeroInvoice)
_account_decoder = msgspec.json.Decoder(XeroAccount)
_invoices_envelope = msgspec.json.Decoder(_InvoicesEnvelope)
_accounts_envelope = msgspec.json.Decoder(_AccountsEnvelope)
_credit_notes_envelope = msgspec.json.Decoder(_CreditNotesEnvelope)


def decode_invoices(body: bytes, page: int) -> XeroInvoicePage:
    """An `/Invoices` response body → typed invoices and their raw documents.

    Raises msgspec.DecodeError for a body that is not JSON (cut short or garbled on the way) and
    XeroDataInvalid for JSON whose invoices lack what every Xero invoice has."""
    began = time.perf_counter()
    envelope = _invoices_envelope.decode(body)
    raws = [JsonText(bytes(raw)) for raw in envelope.invoices]
    try:
        invoices = [_invoice_decoder.decode(raw) for raw in raws]
    except (msgspec.ValidationError, ValueError) as error:
        raise XeroDataInvalid(str(error)) from None
    pagination = envelope.pagination or _Pagination()
    return XeroInvoicePage(
        invoices=invoices,
        raw=raws,
        page=page,
        page_count=pagination.page_count,
        item_count=pagination.item_count,
        decode_s=time.perf_counter() - began,
    )


def decode_accounts(body: bytes) -> tuple[list[XeroAccount], list[JsonText]]:
    """An `/Accounts` response body → typed accounts and their raw documents."""
    envelope = _accounts_envelope.decode(body)
    raws = [JsonText(bytes(raw)) for raw in envelope.accounts]
    try:
        return [_account_decoder.decode(raw) for raw in raws], raws
    except (msgspec.ValidationError, ValueError) as error:
        raise XeroDataInvalid(str(error)) from None


def decode_credit_notes(body: bytes) -> list[XeroCreditNote]:
    """A `/CreditNotes` response body → the credit notes with their allocations."""
    try:
        return _credit_notes_envelope.decode(body).credit_notes
    except msgspec.ValidationError as error:
        raise XeroDataInvalid(str(error)) from None
