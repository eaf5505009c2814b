"""The one mapping from Xero's records to ledger rows: invoices, their line items, accounts.

Every column is named where it is filled (the rows take keywords only)."""

from __future__ import annotations

import uuid
from datetime import datetime

from src.core.database import JsonText, json_dumps, utcnow
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.ledger.models import Account
from src.domains.external_accounting.ledger.rows import AccountRow, InvoiceRow, LineItemRow
from src.domains.external_accounting.xero.data.xero_models import (
    XeroAccount,
    XeroInvoice,
    XeroLineItem,
)


def invoice_row(
    connection: Connection,
    *,
    row_id: uuid.UUID,
    invoice: XeroInvoice,
    raw: JsonText,
    synced_at: datetime,
) -> InvoiceRow:
    """The `invoices` row of a Xero invoice."""
    contact = invoice.contact
    return InvoiceRow(
        id=row_id,
        organization_id=connection.organization_id,
        connection_id=connection.id,
        provider_id=invoice.invoice_id,
        number=invoice.invoice_number,
        type=invoice.type,
        status=invoice.status,
        contact_id=contact.contact_id if contact else None,
        contact_name=contact.name if contact else None,
        reference=invoice.reference,
        date=invoice.date,
        due_date=invoice.due_date,
        fully_paid_on=invoice.fully_paid_on_date,
        line_amount_types=invoice.line_amount_types,
        currency_code=invoice.currency_code,
        currency_rate=invoice.currency_rate,
        sub_total=invoice.sub_total,
        total_tax=invoice.total_tax,
        total=invoice.total,
        total_discount=invoice.total_discount,
        amount_due=invoice.amount_due,
        amount_paid=invoice.amount_paid,
        amount_credited=invoice.amount_credited,
        provider_updated_at=invoice.updated_date_utc,
        raw=raw.decode(),
        synced_at=synced_at,
    )


def _tracking_text(line: XeroLineItem) -> str:
    """The line's tracking categories as Xero sent them; a missing or null list is empty."""
    text = bytes(line.tracking).decode().strip()
    return "[]" if text in ("", "null") else text


def line_item_rows(invoice_row_id: uuid.UUID, invoice: XeroInvoice) -> list[LineItemRow]:
    """The `invoice_line_items` rows of a Xero invoice, in Xero's order."""
    return [
        LineItemRow(
            invoice_id=invoice_row_id,
            position=position,
            provider_id=line.line_item_id,
            description=line.description,
            quantity=line.quantity,
            unit_amount=line.unit_amount,
            item_code=line.item_code,
            account_code=line.account_code,
            account_id=line.account_id,
            tax_type=line.tax_type,
            tax_amount=line.tax_amount,
            line_amount=line.line_amount,
            discount_rate=line.discount_rate,
            tracking=_tracking_text(line),
        )
        for position, line in enumerate(invoice.line_items)
    ]


def account_row(connection: Connection, account: XeroAccount, raw: JsonText) -> AccountRow:
    """The `accounts` row of a Xero account."""
    return AccountRow(
        id=uuid.uuid4(),
        organization_id=connection.organization_id,
        connection_id=connection.id,
        provider_id=account.account_id,
        code=account.code,
        name=account.name,
        type=account.type,
        class_=account.class_,
        status=account.status,
        description=account.description,
        bank_account_number=account.bank_account_number,
        bank_account_type=account.bank_account_type,
        currency_code=account.currency_code,
        tax_type=account.tax_type,
        reporting_code=account.reporting_code,
        reporting_code_name=account.reporting_code_name,
        system_account=account.system_account,
        enable_payments_to_account=account.enable_payments_to_account,
        provider_updated_at=account.updated_date_utc,
        raw=raw,
        synced_at=utcnow(),
    )


# The status of an account Xero no longer lists (Xero's own AccountStatus for a deleted one).
DELETED_ACCOUNT_STATUS = "DELETED"


def deleted_account_row(stored: Account, *, noticed_at: datetime) -> AccountRow:
    """The `accounts` row of a stored account that Xero's whole chart no longer lists: kept with
    everything we knew of it, status DELETED and when we noticed."""
    return AccountRow(
        id=stored.id,
        organization_id=stored.organization_id,
        connection_id=stored.connection_id,
        provider_id=stored.provider_id,
        code=stored.code,
        name=stored.name,
        type=stored.type,
        class_=stored.class_,
        status=DELETED_ACCOUNT_STATUS,
        description=stored.description,
        bank_account_number=stored.bank_account_number,
        bank_account_type=stored.bank_account_type,
        currency_code=stored.currency_code,
        tax_type=stored.tax_type,
        reporting_code=stored.reporting_code,
        reporting_code_name=stored.reporting_code_name,
        system_account=stored.system_account,
        enable_payments_to_account=stored.enable_payments_to_account,
        provider_updated_at=stored.provider_updated_at,
        raw=JsonText(json_dumps(stored.raw).encode()),
        synced_at=noticed_at,
        deleted_at=noticed_at,
    )
