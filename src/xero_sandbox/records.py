"""The records the sandbox serves, their ids, and Xero's money rounding.

A tenant's invoices live as compact `InvoiceColumns` (the fields filters need) plus an
`InvoiceRecord` built on demand by `generators.generate_invoice`; an InvoiceID encodes its index so
a lookup needs no dictionary. The chart of accounts is in `chart.py`, the generation in
`generators.py`.
"""

from __future__ import annotations

import hashlib
import uuid
from array import array
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

TYPES = ("ACCREC", "ACCPAY")
STATUSES = ("DRAFT", "SUBMITTED", "AUTHORISED", "PAID", "VOIDED", "DELETED")
TYPE_CODE = {name: code for code, name in enumerate(TYPES)}
STATUS_CODE = {name: code for code, name in enumerate(STATUSES)}
CENT = Decimal("0.01")
ZERO = Decimal("0.00")
HISTORY_DAYS = 6 * 365


def uuid_text(bits: int) -> str:
    """A version-4-shaped UUID string from 128 bits (cheaper than building `uuid.UUID`s)."""
    bits = (bits & ~(0xF000 << 64)) | (0x4000 << 64)
    bits = (bits & ~(0xC000 << 48)) | (0x8000 << 48)
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def stable_uuid(*parts: object) -> str:
    """A UUID derived from the parts: the same inputs give the same id."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=16).digest()
    return uuid_text(int.from_bytes(digest, "big"))


def money(value: Decimal) -> Decimal:
    """Round half-up to cents, as Xero does."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass
class LineRecord:
    line_item_id: str
    description: str
    quantity: Decimal
    unit_amount: Decimal
    account_code: str
    account_id: str
    tax_type: str
    tax_amount: Decimal
    line_amount: Decimal
    item_code: str | None = None
    discount_rate: Decimal | None = None
    tracking: list[dict[str, str]] = field(default_factory=list)
    # The line rendered as JSON minus its id, filled in by the renderer and shared by every
    # invoice that draws this line from its tenant's pool.
    json_tail: bytes | None = None

    def with_id(self, line_item_id: str) -> LineRecord:
        """A copy of this pool line under a new LineItemID (faster than `dataclasses.replace`)."""
        return LineRecord(
            line_item_id,
            self.description,
            self.quantity,
            self.unit_amount,
            self.account_code,
            self.account_id,
            self.tax_type,
            self.tax_amount,
            self.line_amount,
            self.item_code,
            self.discount_rate,
            self.tracking,
            self.json_tail,
        )


@dataclass
class PaymentRecord:
    payment_id: str
    day: int
    amount: Decimal
    currency_rate: Decimal


@dataclass
class CreditRecord:
    credit_note_id: str
    number: str
    day: int
    amount: Decimal


@dataclass
class AllocationRecord:
    """A credit note's amount applied to one invoice."""

    invoice_id: str
    invoice_number: str
    day: int
    amount: Decimal


@dataclass
class CreditNoteRecord:
    """A credit note made through the control API: one untaxed line, allocated in full."""

    credit_note_id: str
    number: str
    type: str  # ACCRECCREDIT | ACCPAYCREDIT
    status: str
    contact_id: str
    contact_name: str
    date_day: int
    currency_code: str
    currency_rate: Decimal
    account_code: str
    total: Decimal
    allocations: list[AllocationRecord]
    updated_ms: int

    @property
    def remaining_credit(self) -> Decimal:
        return self.total - sum((a.amount for a in self.allocations), ZERO)


@dataclass
class InvoiceRecord:
    index: int
    invoice_id: str
    type: str
    number: str
    reference: str
    contact_id: str
    contact_name: str
    date_day: int
    due_day: int
    status: str
    line_amount_types: str
    currency_code: str
    currency_rate: Decimal
    lines: list[LineRecord]
    payments: list[PaymentRecord]
    credits: list[CreditRecord]
    updated_ms: int
    sent_to_contact: bool
    has_attachments: bool
    fully_paid_day: int | None = None

    @property
    def total_tax(self) -> Decimal:
        return sum((line.tax_amount for line in self.lines), ZERO)

    @property
    def total(self) -> Decimal:
        lines = sum((line.line_amount for line in self.lines), ZERO)
        return lines if self.line_amount_types == "Inclusive" else lines + self.total_tax

    @property
    def sub_total(self) -> Decimal:
        return self.total - self.total_tax

    @property
    def total_discount(self) -> Decimal:
        discount = ZERO
        for line in self.lines:
            if line.discount_rate:
                gross = line.quantity * line.unit_amount
                discount += money(gross * line.discount_rate / 100)
        return discount

    @property
    def amount_paid(self) -> Decimal:
        return sum((p.amount for p in self.payments), ZERO)

    @property
    def amount_credited(self) -> Decimal:
        return sum((c.amount for c in self.credits), ZERO)

    @property
    def amount_due(self) -> Decimal:
        if self.status in ("VOIDED", "DELETED"):
            return ZERO
        return self.total - self.amount_paid - self.amount_credited


@dataclass(frozen=True)
class TenantProfile:
    """What invoice generation needs to know about a tenant, derived from (seed, index)."""

    seed: int
    tenant_index: int
    tenant_id: str
    name: str
    base_currency: str
    tax_rate: Decimal
    contacts: tuple[tuple[str, str], ...]
    revenue_accounts: tuple[tuple[str, str], ...]
    expense_accounts: tuple[tuple[str, str], ...]
    tracking: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...]
    line_pools: dict[tuple[str, str], list[LineRecord]] = field(
        default_factory=dict, compare=False, hash=False
    )


@dataclass
class InvoiceColumns:
    """The filterable fields of every invoice, in compact arrays indexed by invoice index."""

    type_code: bytearray = field(default_factory=bytearray)
    status_code: bytearray = field(default_factory=bytearray)
    date_day: array[int] = field(default_factory=lambda: array("i"))
    updated_ms: array[int] = field(default_factory=lambda: array("q"))
    contact: array[int] = field(default_factory=lambda: array("i"))

    def __len__(self) -> int:
        return len(self.type_code)

    def append(
        self, type_code: int, status_code: int, day: int, updated: int, contact: int
    ) -> None:
        self.type_code.append(type_code)
        self.status_code.append(status_code)
        self.date_day.append(day)
        self.updated_ms.append(updated)
        self.contact.append(contact)


def invoice_id(profile: TenantProfile, index: int) -> str:
    """The InvoiceID of invoice `index`: hashed prefix, the index itself in the last 12 hex digits
    so an id can be mapped back to its index without a million-entry dictionary."""
    digest = hashlib.blake2b(
        f"invoice:{profile.seed}:{profile.tenant_id}:{index}".encode(), digest_size=10
    ).digest()
    return str(uuid.UUID(bytes=digest + index.to_bytes(6, "big"), version=4))


def index_from_invoice_id(profile: TenantProfile, value: str) -> int | None:
    """The index encoded in an InvoiceID of this tenant, or None when it is not one of ours."""
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return None
    index = int.from_bytes(parsed.bytes[10:], "big")
    return index if invoice_id(profile, index) == str(parsed) else None


def invoice_number(type_name: str, index: int) -> str:
    """Sales invoices are numbered INV-000001; bills carry the supplier's reference."""
    return f"INV-{index + 1:06d}" if type_name == "ACCREC" else f"BILL-{index + 1:06d}"
