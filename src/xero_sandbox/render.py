"""Invoices and accounts as Xero renders them: exact decimal money, `/Date(ms+0000)/` dates."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from src.xero_sandbox.records import ZERO, CreditNoteRecord, InvoiceRecord, LineRecord, stable_uuid
from src.xero_sandbox.xero_dates import day_to_date, day_to_ms, ms_to_datetime, ms_to_xero


def num(value: Decimal) -> orjson.Fragment:
    """A JSON number written exactly as the Decimal reads (Xero sends `40.00`, not `40.0`)."""
    return orjson.Fragment(str(value).encode())


def _day(day: int) -> str:
    return ms_to_xero(day_to_ms(day))


def _day_string(day: int) -> str:
    return f"{day_to_date(day).isoformat()}T00:00:00"


def render_line(line: LineRecord) -> orjson.Fragment:
    """One line item (the part shared with its pool template is rendered once)."""
    if line.json_tail is None:
        line.json_tail = orjson.dumps(_line_fields(line))[1:]
    return orjson.Fragment(b'{"LineItemID":"' + line.line_item_id.encode() + b'",' + line.json_tail)


def _line_fields(line: LineRecord) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "Description": line.description,
        "Quantity": num(line.quantity),
        "UnitAmount": num(line.unit_amount),
        "TaxType": line.tax_type,
        "TaxAmount": num(line.tax_amount),
        "LineAmount": num(line.line_amount),
        "AccountCode": line.account_code,
        "AccountID": line.account_id,
        "Tracking": line.tracking,
    }
    if line.item_code:
        rendered["ItemCode"] = line.item_code
    if line.discount_rate is not None:
        rendered["DiscountRate"] = num(line.discount_rate)
    return rendered


def render_invoice(
    record: InvoiceRecord, *, line_items: bool, summary: bool = False
) -> dict[str, Any]:
    """One invoice as Xero returns it; `summary` drops the heavy parts like `summaryOnly=true`."""
    total, tax = record.total, record.total_tax
    paid, credited = record.amount_paid, record.amount_credited
    due = ZERO if record.status in ("VOIDED", "DELETED") else total - paid - credited
    rendered: dict[str, Any] = {
        "Type": record.type,
        "InvoiceID": record.invoice_id,
        "InvoiceNumber": record.number,
        "Reference": record.reference,
        "AmountDue": num(due),
        "AmountPaid": num(paid),
        "AmountCredited": num(credited),
        "CurrencyRate": num(record.currency_rate),
        "IsDiscounted": False,
        "HasAttachments": record.has_attachments,
        "HasErrors": False,
        "Contact": {"ContactID": record.contact_id, "Name": record.contact_name},
        "DateString": _day_string(record.date_day),
        "Date": _day(record.date_day),
        "DueDateString": _day_string(record.due_day),
        "DueDate": _day(record.due_day),
        "Status": record.status,
        "LineAmountTypes": record.line_amount_types,
        "SubTotal": num(total - tax),
        "TotalTax": num(tax),
        "Total": num(total),
        "UpdatedDateUTC": ms_to_xero(record.updated_ms),
        "UpdatedDateUTCString": ms_to_datetime(record.updated_ms).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "CurrencyCode": record.currency_code,
    }
    discount = record.total_discount
    if discount:
        rendered["TotalDiscount"] = num(discount)
    if record.fully_paid_day is not None:
        rendered["FullyPaidOnDate"] = _day(record.fully_paid_day)
    if summary:
        return rendered
    rendered["SentToContact"] = record.sent_to_contact
    rendered["Payments"] = [
        {
            "PaymentID": p.payment_id,
            "Date": _day(p.day),
            "Amount": num(p.amount),
            "CurrencyRate": num(p.currency_rate),
            "HasAccount": False,
            "HasValidationErrors": False,
        }
        for p in record.payments
    ]
    rendered["CreditNotes"] = [
        {
            "CreditNoteID": c.credit_note_id,
            "CreditNoteNumber": c.number,
            "Date": _day(c.day),
            "AppliedAmount": num(c.amount),
            "Total": num(c.amount),
            "HasErrors": False,
        }
        for c in record.credits
    ]
    rendered["Prepayments"] = []
    rendered["Overpayments"] = []
    rendered["LineItems"] = [render_line(line) for line in record.lines] if line_items else []
    return rendered


def render_credit_note(note: CreditNoteRecord) -> dict[str, Any]:
    """A credit note as `GET /CreditNotes` returns it, with its line and allocations."""
    return {
        "CreditNoteID": note.credit_note_id,
        "CreditNoteNumber": note.number,
        "Type": note.type,
        "Status": note.status,
        "Contact": {"ContactID": note.contact_id, "Name": note.contact_name},
        "DateString": _day_string(note.date_day),
        "Date": _day(note.date_day),
        "LineAmountTypes": "NoTax",
        "LineItems": [
            {
                "LineItemID": stable_uuid("credit-note-line", note.credit_note_id),
                "Description": f"Credit against {note.allocations[0].invoice_number}",
                "Quantity": num(Decimal("1.0000")),
                "UnitAmount": num(note.total),
                "TaxType": "NONE",
                "TaxAmount": num(ZERO),
                "LineAmount": num(note.total),
                "AccountCode": note.account_code,
                "Tracking": [],
            }
        ],
        "SubTotal": num(note.total),
        "TotalTax": num(ZERO),
        "Total": num(note.total),
        "UpdatedDateUTC": ms_to_xero(note.updated_ms),
        "UpdatedDateUTCString": ms_to_datetime(note.updated_ms).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "CurrencyCode": note.currency_code,
        "CurrencyRate": num(note.currency_rate),
        "FullyPaidOnDate": _day(note.date_day),
        "RemainingCredit": num(note.remaining_credit),
        "Allocations": [
            {
                "Amount": num(a.amount),
                "Date": _day(a.day),
                "Invoice": {"InvoiceID": a.invoice_id, "InvoiceNumber": a.invoice_number},
            }
            for a in note.allocations
        ],
        "Payments": [],
        "HasAttachments": False,
        "HasErrors": False,
    }


def render_account(account: dict[str, Any]) -> dict[str, Any]:
    """An account (stored with its UpdatedDateUTC as Unix ms)."""
    return {**account, "UpdatedDateUTC": ms_to_xero(int(account["UpdatedDateUTC"]))}


def dumps(payload: Any) -> bytes:
    """Serialise a response body."""
    return orjson.dumps(payload)
