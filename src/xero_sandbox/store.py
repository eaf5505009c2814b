"""The sandbox's data: tenants, their accounts and invoices, queries over them, and the
mutations a Xero user makes (each bumps `UpdatedDateUTC`)."""

from __future__ import annotations

import random
import time
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from src.xero_sandbox.chart import generate_accounts
from src.xero_sandbox.generators import (
    generate_columns,
    generate_invoice,
    make_line,
    make_profile,
)
from src.xero_sandbox.records import (
    STATUS_CODE,
    TYPE_CODE,
    TYPES,
    ZERO,
    AllocationRecord,
    CreditNoteRecord,
    CreditRecord,
    InvoiceColumns,
    InvoiceRecord,
    LineRecord,
    PaymentRecord,
    TenantProfile,
    index_from_invoice_id,
    invoice_id,
    invoice_number,
    money,
    stable_uuid,
)
from src.xero_sandbox.xero_dates import date_to_day

Predicate = Callable[[int], bool]


@dataclass(frozen=True)
class ExactAmounts:
    """A line's figures as a test wants them (extreme values, many digits)."""

    quantity: Decimal
    unit_amount: Decimal
    tax_amount: Decimal = Decimal(0)


class SandboxDataError(ValueError):
    """A control-API request that Xero would refuse (e.g. voiding a paid invoice)."""


class AccountInUse(SandboxDataError):
    """Xero deletes only accounts no transaction uses (the others can only be archived)."""


def now_ms() -> int:
    """The current instant in Unix ms."""
    return time.time_ns() // 1_000_000


def _ascending_by_update(order: str) -> bool:
    parts = order.split()
    return bool(parts) and parts[0].lower() == "updateddateutc" and parts[-1].upper() != "DESC"


@dataclass(frozen=True)
class InvoiceQuery:
    """A normalised invoice query: the cache key of its result list."""

    predicate_key: str
    order_key: str
    modified_since_ms: int | None


@dataclass
class TenantData:
    """One Xero organisation's accounts and invoices."""

    profile: TenantProfile
    created_at: datetime
    accounts: list[dict[str, Any]]
    columns: InvoiceColumns
    overrides: dict[int, InvoiceRecord] = field(default_factory=dict)
    # Credit notes made through the control API (the generated ones live on their invoices).
    credit_notes: dict[str, CreditNoteRecord] = field(default_factory=dict)
    version: int = 0
    _cache: OrderedDict[tuple[InvoiceQuery, int], list[int]] = field(default_factory=OrderedDict)

    @property
    def tenant_id(self) -> str:
        return self.profile.tenant_id

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def invoice_count(self) -> int:
        return len(self.columns)

    # -- reading -------------------------------------------------------------------------------

    def invoice(self, index: int) -> InvoiceRecord:
        """The full invoice at `index` (generated on demand unless it was mutated)."""
        override = self.overrides.get(index)
        return (
            override
            if override is not None
            else generate_invoice(self.profile, self.columns, index)
        )

    def index_of(self, invoice_id_text: str) -> int | None:
        """The index of an InvoiceID of this tenant, or None."""
        index = index_from_invoice_id(self.profile, invoice_id_text)
        if index is None or index >= len(self.columns):
            return None
        return index

    def query(
        self,
        query: InvoiceQuery,
        predicate: Predicate | None,
        sort_key: Callable[[int], Any] | None,
        descending: bool,
    ) -> list[int]:
        """Indices matching `predicate` and the modified-since bound, ordered; cached per data
        version so paging through a large result is a slice, not a rescan."""
        if query.modified_since_ms is not None and _ascending_by_update(query.order_key):
            # A sync pages by If-Modified-Since with this ordering: bisect the cached ordered list
            # instead of scanning every invoice for each new bound.
            everything = self.query(
                replace(query, modified_since_ms=None), predicate, sort_key, descending
            )
            updated = self.columns.updated_ms
            start = bisect_left(everything, query.modified_since_ms, key=lambda i: updated[i])
            return everything[start:]
        key = (query, self.version)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        indices: Sequence[int] = range(len(self.columns))
        if query.modified_since_ms is not None:
            bound, updated = query.modified_since_ms, self.columns.updated_ms
            indices = [i for i in indices if updated[i] >= bound]
        if predicate is not None:
            indices = [i for i in indices if predicate(i)]
        result = list(indices)
        if sort_key is not None:
            result.sort(key=lambda i: (sort_key(i), i), reverse=descending)
        elif descending:
            result.reverse()
        self._cache[key] = result
        while len(self._cache) > 16:
            self._cache.popitem(last=False)
        return result

    def accounts_modified_since(self, bound_ms: int | None) -> list[dict[str, Any]]:
        """Accounts, optionally only those updated at or after `bound_ms`."""
        if bound_ms is None:
            return list(self.accounts)
        return [a for a in self.accounts if int(a["UpdatedDateUTC"]) >= bound_ms]

    # -- mutations (the control API) ----------------------------------------------------------

    def touch(self, record: InvoiceRecord) -> InvoiceRecord:
        """Store a changed invoice and bump its UpdatedDateUTC."""
        stamp = max(now_ms(), self.columns.updated_ms[record.index] + 1)
        record.updated_ms = stamp
        self.columns.type_code[record.index] = TYPE_CODE[record.type]
        self.columns.status_code[record.index] = STATUS_CODE[record.status]
        self.columns.date_day[record.index] = record.date_day
        self.columns.updated_ms[record.index] = stamp
        self.overrides[record.index] = record
        self.version += 1
        return record

    def _get(self, invoice_id_text: str) -> InvoiceRecord:
        index = self.index_of(invoice_id_text)
        if index is None:
            raise LookupError(invoice_id_text)
        return self.invoice(index)

    def create_invoice(
        self,
        *,
        type_name: str = "ACCREC",
        status: str = "DRAFT",
        date_text: str | None = None,
        lines: int = 2,
        seed: int | None = None,
        amounts: Sequence[ExactAmounts] | None = None,
        currency_rate: Decimal | None = None,
    ) -> InvoiceRecord:
        """Add a new invoice (generated realistically from `seed`) with the given basics; with
        `amounts`, one line per entry carries exactly those figures (the totals follow)."""
        if amounts:
            lines = len(amounts)
        if type_name not in TYPES:
            raise SandboxDataError(f"Type must be one of {', '.join(TYPES)}")
        if status not in ("DRAFT", "SUBMITTED", "AUTHORISED"):
            raise SandboxDataError("A new invoice must be DRAFT, SUBMITTED or AUTHORISED")
        if not 1 <= lines <= 10:
            raise SandboxDataError("lines must be between 1 and 10")
        day = (
            date_to_day(datetime.fromisoformat(date_text).date())
            if date_text
            else (date_to_day(datetime.now(UTC).date()))
        )
        index = len(self.columns)
        self.columns.append(TYPE_CODE[type_name], STATUS_CODE[status], day, now_ms(), 0)
        record = generate_invoice(self.profile, self.columns, index)
        rng = random.Random(seed if seed is not None else index)
        record.lines = record.lines[:lines]
        while len(record.lines) < lines:
            record.lines.append(self._new_line(record, rng, len(record.lines)))
        if amounts:
            record.lines = [
                replace(
                    line,
                    quantity=exact.quantity,
                    unit_amount=exact.unit_amount,
                    tax_amount=exact.tax_amount,
                    line_amount=exact.quantity * exact.unit_amount,
                    discount_rate=None,
                    json_tail=None,  # the cached rendering is of the generated figures
                )
                for line, exact in zip(record.lines, amounts, strict=True)
            ]
        if currency_rate is not None:
            record.currency_rate = currency_rate
        record.payments, record.credits, record.fully_paid_day = [], [], None
        record.invoice_id = invoice_id(self.profile, index)
        record.number = invoice_number(type_name, index)
        return self.touch(record)

    def _new_line(self, record: InvoiceRecord, rng: random.Random, n: int) -> LineRecord:
        accounts = (
            self.profile.revenue_accounts
            if record.type == "ACCREC"
            else self.profile.expense_accounts
        )
        tax_type = record.lines[0].tax_type if record.lines else "OUTPUT"
        return make_line(rng, self.profile, accounts, tax_type, record.line_amount_types)

    def edit_invoice(
        self,
        invoice_id_text: str,
        *,
        reference: str | None = None,
        date_text: str | None = None,
        add_line: bool = False,
        remove_line: bool = False,
    ) -> InvoiceRecord:
        """Edit what a Xero user can edit on a DRAFT, SUBMITTED or AUTHORISED invoice."""
        record = self._get(invoice_id_text)
        if record.status not in ("DRAFT", "SUBMITTED", "AUTHORISED"):
            raise SandboxDataError(f"An invoice in status {record.status} cannot be edited")
        if reference is not None:
            record.reference = reference
        if date_text is not None:
            record.date_day = date_to_day(datetime.fromisoformat(date_text).date())
        if add_line:
            if len(record.lines) >= 10:
                raise SandboxDataError("An invoice in the sandbox has at most 10 line items")
            record.lines.append(self._new_line(record, random.Random(now_ms()), len(record.lines)))
        if remove_line:
            if len(record.lines) <= 1:
                raise SandboxDataError("An invoice must keep at least one line item")
            record.lines.pop()
        if record.amount_due < 0:
            raise SandboxDataError("The edit would make the amount due negative")
        return self.touch(record)

    def set_status(self, invoice_id_text: str, status: str) -> InvoiceRecord:
        """Authorise, submit, void or delete, following Xero's transitions."""
        record = self._get(invoice_id_text)
        allowed = {
            "SUBMITTED": ("DRAFT",),
            "AUTHORISED": ("DRAFT", "SUBMITTED"),
            "VOIDED": ("AUTHORISED", "SUBMITTED"),
            "DELETED": ("DRAFT", "SUBMITTED"),
        }
        if status not in allowed:
            raise SandboxDataError(f"Cannot set status {status} directly")
        if record.status not in allowed[status]:
            raise SandboxDataError(f"An invoice in status {record.status} cannot become {status}")
        if status == "VOIDED" and record.amount_paid > 0:
            raise SandboxDataError("An invoice with payments cannot be voided")
        record.status = status
        return self.touch(record)

    def pay(self, invoice_id_text: str, amount: Decimal | None = None) -> InvoiceRecord:
        """Apply a payment (the full amount due when `amount` is None); PAID when nothing is due."""
        record = self._get(invoice_id_text)
        if record.status != "AUTHORISED":
            raise SandboxDataError(f"Only AUTHORISED invoices can be paid, not {record.status}")
        due = record.amount_due
        amount = due if amount is None else money(amount)
        if amount <= ZERO or amount > due:
            raise SandboxDataError(f"Payment must be more than 0 and at most the amount due {due}")
        today = date_to_day(datetime.now(UTC).date())
        record.payments.append(
            PaymentRecord(
                stable_uuid("payment", record.invoice_id, len(record.payments), now_ms()),
                today,
                amount,
                record.currency_rate,
            )
        )
        if record.amount_due == ZERO:
            record.status = "PAID"
            record.fully_paid_day = today
        return self.touch(record)

    def create_credit_note(self, invoice_id_text: str, amount: Decimal) -> CreditNoteRecord:
        """A credit note for `amount`, allocated in full to the invoice: its AmountCredited
        rises, its AmountDue falls (PAID at zero) and its UpdatedDateUTC moves."""
        record = self._get(invoice_id_text)
        if record.status != "AUTHORISED":
            raise SandboxDataError(
                f"Only AUTHORISED invoices take a credit note allocation, not {record.status}"
            )
        if money(amount) != amount:
            raise SandboxDataError("A credit note amount has at most 2 decimal places")
        due = record.amount_due
        if amount <= ZERO or amount > due:
            raise SandboxDataError(
                f"The credit must be more than 0 and at most the amount due {due}"
            )
        today = date_to_day(datetime.now(UTC).date())
        note_id = stable_uuid("credit-note", self.tenant_id, record.invoice_id, len(record.credits))
        number = f"CN-{record.index + 1:06d}-{len(record.credits) + 1}"
        record.credits.append(CreditRecord(note_id, number, today, amount))
        if record.amount_due == ZERO:
            record.status = "PAID"
            record.fully_paid_day = today
        self.touch(record)
        note = CreditNoteRecord(
            credit_note_id=note_id,
            number=number,
            type=f"{record.type}CREDIT",
            status="PAID",  # Xero's status for a credit note with nothing left to allocate
            contact_id=record.contact_id,
            contact_name=record.contact_name,
            date_day=today,
            currency_code=record.currency_code,
            currency_rate=record.currency_rate,
            account_code=record.lines[0].account_code,
            total=amount,
            allocations=[AllocationRecord(record.invoice_id, record.number, today, amount)],
            updated_ms=record.updated_ms,
        )
        self.credit_notes[note_id] = note
        return note

    # -- Xero's blind spots (edits `UpdatedDateUTC` never shows, see blind_spots.py) -------------

    def set_line_account_code(
        self, invoice_id_text: str, position: int, code: str
    ) -> InvoiceRecord:
        """Re-code line `position` to the account with `code`, leaving UpdatedDateUTC as it is
        (Xero does not mark an invoice updated for it). Voided and deleted invoices are final."""
        record = self._get(invoice_id_text)
        if record.status in ("VOIDED", "DELETED"):
            raise SandboxDataError(f"An invoice in status {record.status} cannot be edited")
        if not 0 <= position < len(record.lines):
            raise SandboxDataError(
                f"The invoice has no line {position} (it has {len(record.lines)})"
            )
        account = next((a for a in self.accounts if a["Code"] == code), None)
        if account is None:
            raise SandboxDataError(f"No account has code {code!r}")
        # A copy, so the pool line other invoices share (and its cached rendering) stays as it is.
        record.lines[position] = replace(
            record.lines[position],
            account_code=code,
            account_id=str(account["AccountID"]),
            json_tail=None,
        )
        self.overrides[record.index] = record
        self.version += 1
        return record

    def delete_account(self, account_id_text: str) -> dict[str, Any]:
        """Remove an account outright, as Xero's `DELETE /Accounts/{id}` does for unused ones;
        `AccountInUse` when a line of any invoice is coded to it, LookupError when unknown."""
        wanted = account_id_text.lower()
        account = next((a for a in self.accounts if a["AccountID"] == wanted), None)
        if account is None:
            raise LookupError(account_id_text)
        if self._account_used(wanted):
            raise AccountInUse(
                f"Account {account['Code']} is used by invoice lines; archive it instead"
            )
        self.accounts.remove(account)
        return account

    def _account_used(self, account_id_text: str) -> bool:
        # Generated lines only draw on the profile's revenue and expense accounts, so any other
        # account is used only by an edited invoice: no scan of every invoice for those.
        pools = self.profile.revenue_accounts + self.profile.expense_accounts
        edited = self.overrides.values()
        if not any(pool_id == account_id_text for _, pool_id in pools):
            return any(line.account_id == account_id_text for r in edited for line in r.lines)
        return any(
            line.account_id == account_id_text
            for index in range(self.invoice_count)
            for line in self.invoice(index).lines
        )


@dataclass
class SandboxStore:
    """Every tenant of the sandbox."""

    seed: int
    tenants: dict[str, TenantData] = field(default_factory=dict)
    accounts_per_tenant: int | None = None

    @classmethod
    def generate(
        cls, tenants: int, invoices: int, seed: int, accounts: int | None = None
    ) -> SandboxStore:
        """`tenants` tenants of `invoices` invoices each, deterministic from `seed`."""
        store = cls(seed=seed, accounts_per_tenant=accounts)
        for _ in range(tenants):
            store.add_tenant(None, invoices)
        return store

    def add_tenant(self, name: str | None, invoices: int) -> TenantData:
        """A new tenant with generated data."""
        index = len(self.tenants)
        profile = make_profile(self.seed, index, name)
        now = now_ms()
        today = date_to_day(datetime.now(UTC).date())
        tenant = TenantData(
            profile=profile,
            created_at=datetime.now(UTC),
            accounts=generate_accounts(profile, self.accounts_per_tenant, now),
            columns=generate_columns(profile, invoices, today, now),
        )
        self.tenants[profile.tenant_id] = tenant
        return tenant
