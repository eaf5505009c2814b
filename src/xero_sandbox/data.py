"""Deterministic generation of a tenant's chart of accounts and invoices.

Invoice `i` of tenant `t` is a pure function of (seed, t, i): the few fields that filters need
(type, status, date, updated time, contact) are generated up front into compact arrays, and the
rest (line items, payments, amounts) is derived on demand from a per-invoice random stream. That is
how a tenant of 1,000,000 invoices costs a few tens of MB and no pre-rendered JSON.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from array import array
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from src.xero_sandbox.xero_dates import day_to_ms

TYPES = ("ACCREC", "ACCPAY")
STATUSES = ("DRAFT", "SUBMITTED", "AUTHORISED", "PAID", "VOIDED", "DELETED")
TYPE_CODE = {name: code for code, name in enumerate(TYPES)}
STATUS_CODE = {name: code for code, name in enumerate(STATUSES)}
CENT = Decimal("0.01")
ZERO = Decimal("0.00")
HISTORY_DAYS = 6 * 365
BASE_CURRENCIES = ("NZD", "AUD", "GBP", "USD")
FOREIGN_CURRENCIES = ("USD", "EUR", "GBP", "AUD", "CAD", "JPY")


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
class AccountSpec:
    code: str
    name: str
    type: str
    tax_type: str
    status: str = "ACTIVE"
    system_account: str | None = None
    bank_account_type: str | None = None
    description: str = ""


ACCOUNT_CLASS = {
    "BANK": "ASSET",
    "CURRENT": "ASSET",
    "FIXED": "ASSET",
    "INVENTORY": "ASSET",
    "NONCURRENT": "ASSET",
    "PREPAYMENT": "ASSET",
    "CURRLIAB": "LIABILITY",
    "LIABILITY": "LIABILITY",
    "TERMLIAB": "LIABILITY",
    "PAYG": "LIABILITY",
    "EQUITY": "EQUITY",
    "DEPRECIATN": "EXPENSE",
    "DIRECTCOSTS": "EXPENSE",
    "EXPENSE": "EXPENSE",
    "OVERHEADS": "EXPENSE",
    "OTHERINCOME": "REVENUE",
    "REVENUE": "REVENUE",
    "SALES": "REVENUE",
}

DEFAULT_CHART: tuple[AccountSpec, ...] = (
    AccountSpec("090", "Business Bank Account", "BANK", "NONE", bank_account_type="BANK"),
    AccountSpec("091", "Business Savings Account", "BANK", "NONE", bank_account_type="BANK"),
    AccountSpec("092", "Company Credit Card", "BANK", "NONE", bank_account_type="CREDITCARD"),
    AccountSpec("093", "PayPal", "BANK", "NONE", bank_account_type="PAYPAL"),
    AccountSpec("200", "Sales", "REVENUE", "OUTPUT", description="Income from sales"),
    AccountSpec("210", "Consulting Fees", "REVENUE", "OUTPUT"),
    AccountSpec("220", "Subscriptions", "SALES", "OUTPUT"),
    AccountSpec("260", "Other Revenue", "REVENUE", "OUTPUT"),
    AccountSpec("270", "Interest Income", "OTHERINCOME", "NONE"),
    AccountSpec("310", "Cost of Goods Sold", "DIRECTCOSTS", "INPUT"),
    AccountSpec("320", "Subcontractors", "DIRECTCOSTS", "INPUT"),
    AccountSpec("400", "Advertising", "OVERHEADS", "INPUT"),
    AccountSpec("404", "Bank Fees", "OVERHEADS", "NONE"),
    AccountSpec("408", "Cleaning", "OVERHEADS", "INPUT"),
    AccountSpec("412", "Consulting & Accounting", "EXPENSE", "INPUT"),
    AccountSpec("416", "Depreciation", "DEPRECIATN", "NONE"),
    AccountSpec("420", "Entertainment", "OVERHEADS", "INPUT"),
    AccountSpec("425", "Freight & Courier", "EXPENSE", "INPUT"),
    AccountSpec("429", "General Expenses", "OVERHEADS", "INPUT"),
    AccountSpec("433", "Insurance", "OVERHEADS", "INPUT"),
    AccountSpec("445", "Light, Power, Heating", "OVERHEADS", "INPUT"),
    AccountSpec("449", "Motor Vehicle Expenses", "OVERHEADS", "INPUT"),
    AccountSpec("453", "Office Expenses", "OVERHEADS", "INPUT"),
    AccountSpec("461", "Printing & Stationery", "OVERHEADS", "INPUT"),
    AccountSpec("469", "Rent", "OVERHEADS", "INPUT"),
    AccountSpec("473", "Repairs and Maintenance", "OVERHEADS", "INPUT"),
    AccountSpec("477", "Wages and Salaries", "EXPENSE", "NONE"),
    AccountSpec("485", "Subscriptions", "OVERHEADS", "INPUT"),
    AccountSpec("489", "Telephone & Internet", "OVERHEADS", "INPUT"),
    AccountSpec("493", "Travel - National", "OVERHEADS", "INPUT"),
    AccountSpec("494", "Travel - International", "OVERHEADS", "NONE"),
    AccountSpec("495", "Old Marketing Costs", "OVERHEADS", "INPUT", status="ARCHIVED"),
    AccountSpec("496", "Legacy Software", "EXPENSE", "INPUT", status="ARCHIVED"),
    AccountSpec("610", "Accounts Receivable", "CURRENT", "NONE", system_account="DEBTORS"),
    AccountSpec("620", "Prepayments", "PREPAYMENT", "NONE"),
    AccountSpec("630", "Inventory", "INVENTORY", "NONE"),
    AccountSpec("710", "Office Equipment", "FIXED", "INPUT"),
    AccountSpec("711", "Less Accumulated Depreciation on Office Equipment", "FIXED", "NONE"),
    AccountSpec("720", "Computer Equipment", "FIXED", "INPUT"),
    AccountSpec("750", "Long-term Investments", "NONCURRENT", "NONE"),
    AccountSpec("800", "Accounts Payable", "CURRLIAB", "NONE", system_account="CREDITORS"),
    AccountSpec("801", "Unpaid Expense Claims", "CURRLIAB", "NONE"),
    AccountSpec("820", "Sales Tax", "CURRLIAB", "NONE", system_account="GST"),
    AccountSpec("825", "Employee Tax Payable", "PAYG", "NONE"),
    AccountSpec("830", "Income Tax", "CURRLIAB", "NONE"),
    AccountSpec("840", "Historical Adjustment", "CURRLIAB", "NONE", system_account="HISTORICAL"),
    AccountSpec("860", "Rounding", "CURRLIAB", "NONE", system_account="ROUNDING"),
    AccountSpec("877", "Tracking Transfers", "CURRLIAB", "NONE"),
    AccountSpec("900", "Loan", "TERMLIAB", "NONE"),
    AccountSpec("910", "Old Director Loan", "LIABILITY", "NONE", status="ARCHIVED"),
    AccountSpec("960", "Retained Earnings", "EQUITY", "NONE", system_account="RETAINEDEARNINGS"),
    AccountSpec("970", "Owner A Funds Introduced", "EQUITY", "NONE"),
    AccountSpec("980", "Owner A Drawings", "EQUITY", "NONE"),
)

_ADJECTIVES = (
    "Blue",
    "Swift",
    "Bright",
    "Golden",
    "Silver",
    "Green",
    "Red",
    "Northern",
    "Coastal",
    "Urban",
    "Summit",
    "Pioneer",
    "Harbour",
    "Maple",
    "Cedar",
    "Atlas",
)
_NOUNS = (
    "Fish",
    "Logistics",
    "Bakery",
    "Consulting",
    "Studios",
    "Traders",
    "Software",
    "Farms",
    "Builders",
    "Partners",
    "Outfitters",
    "Media",
    "Labs",
    "Supplies",
    "Cafe",
    "Motors",
)
_SUFFIXES = ("Ltd", "Limited", "& Co", "Group", "Pty Ltd", "LLC", "Inc", "")
_PRODUCTS = (
    "Consulting hours",
    "Monthly subscription",
    "Widgets",
    "Support plan",
    "Installation",
    "Hardware",
    "Training session",
    "Licence",
    "Freight",
    "Design work",
    "Maintenance",
    "Office supplies",
    "Cloud hosting",
    "Travel",
    "Catering",
)
_TRACKING = (
    ("Region", ("North", "South", "East", "West")),
    ("Department", ("Sales", "Operations", "Research")),
)
CONTACTS_PER_TENANT = 500


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


def make_profile(seed: int, tenant_index: int, name: str | None = None) -> TenantProfile:
    """The deterministic identity of tenant `tenant_index`."""
    rng = random.Random(f"tenant:{seed}:{tenant_index}")
    tenant_id = stable_uuid("tenant", seed, tenant_index)
    if name is None:
        name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {tenant_index + 1}"
    contacts = tuple(
        (
            stable_uuid("contact", seed, tenant_index, c),
            f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {rng.choice(_SUFFIXES)}".strip(),
        )
        for c in range(CONTACTS_PER_TENANT)
    )
    revenue = tuple(
        (a.code, account_id(seed, tenant_index, a.code))
        for a in DEFAULT_CHART
        if a.type in ("REVENUE", "SALES") and a.status == "ACTIVE"
    )
    expense = tuple(
        (a.code, account_id(seed, tenant_index, a.code))
        for a in DEFAULT_CHART
        if a.type in ("DIRECTCOSTS", "OVERHEADS", "EXPENSE") and a.status == "ACTIVE"
    )
    tracking = tuple(
        (
            stable_uuid("tracking", seed, tenant_index, category),
            category,
            tuple((stable_uuid("option", seed, tenant_index, category, o), o) for o in options),
        )
        for category, options in _TRACKING
    )
    return TenantProfile(
        seed=seed,
        tenant_index=tenant_index,
        tenant_id=tenant_id,
        name=name,
        base_currency=BASE_CURRENCIES[tenant_index % len(BASE_CURRENCIES)],
        tax_rate=Decimal(("15", "10", "20", "8")[tenant_index % 4]),
        contacts=contacts,
        revenue_accounts=revenue,
        expense_accounts=expense,
        tracking=tracking,
    )


def account_id(seed: int, tenant_index: int, code: str) -> str:
    """The AccountID of the account with `code`."""
    return stable_uuid("account", seed, tenant_index, code)


def generate_accounts(
    profile: TenantProfile, count: int | None, anchor_ms: int
) -> list[dict[str, object]]:
    """The tenant's chart of accounts as Xero renders it: the default chart, padded with
    generated expense and revenue accounts when `count` asks for more."""
    rng = random.Random(f"accounts:{profile.seed}:{profile.tenant_index}")
    specs = list(DEFAULT_CHART)
    extra = 0
    while count is not None and len(specs) < count:
        kind = ("OVERHEADS", "EXPENSE", "REVENUE", "DIRECTCOSTS")[extra % 4]
        status = "ARCHIVED" if rng.random() < 0.1 else "ACTIVE"
        tax = "OUTPUT" if kind == "REVENUE" else "INPUT"
        specs.append(
            AccountSpec(f"{1000 + extra}", f"{kind.title()} {1000 + extra}", kind, tax, status)
        )
        extra += 1
    if count is not None:
        specs = specs[:count]
    accounts: list[dict[str, object]] = []
    for position, spec in enumerate(specs):
        updated = anchor_ms - rng.randrange(86_400_000, HISTORY_DAYS * 86_400_000)
        account: dict[str, object] = {
            "AccountID": account_id(profile.seed, profile.tenant_index, spec.code),
            "Code": spec.code,
            "Name": spec.name,
            "Status": spec.status,
            "Type": spec.type,
            "TaxType": spec.tax_type,
            "Description": spec.description,
            "Class": ACCOUNT_CLASS[spec.type],
            "EnablePaymentsToAccount": spec.type == "BANK" or position % 7 == 0,
            "ShowInExpenseClaims": ACCOUNT_CLASS[spec.type] == "EXPENSE",
            "BankAccountType": spec.bank_account_type or "",
            "ReportingCode": f"{ACCOUNT_CLASS[spec.type][:3]}.{spec.type[:3]}",
            "ReportingCodeName": spec.type.title(),
            "HasAttachments": False,
            "UpdatedDateUTC": updated,
            "AddToWatchlist": spec.type == "BANK",
        }
        if spec.type == "BANK":
            account["BankAccountNumber"] = (
                f"{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}-{rng.randrange(1000000, 9999999)}-00"  # noqa: E501
            )
            account["CurrencyCode"] = profile.base_currency
        if spec.system_account:
            account["SystemAccount"] = spec.system_account
        accounts.append(account)
    return accounts


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


def _status_for_age(rng: random.Random, age_days: int) -> int:
    roll = rng.random()
    if age_days > 365:  # old books: mostly settled, a few still outstanding
        table = ((0.74, 3), (0.82, 2), (0.90, 4), (0.94, 5), (0.97, 0), (1.0, 1))
    elif age_days > 45:
        table = ((0.55, 3), (0.80, 2), (0.87, 0), (0.92, 1), (0.97, 4), (1.0, 5))
    else:
        table = ((0.25, 3), (0.60, 2), (0.78, 0), (0.90, 1), (0.96, 4), (1.0, 5))
    for threshold, code in table:
        if roll < threshold:
            return code
    return 3


def generate_columns(
    profile: TenantProfile, count: int, anchor_day: int, now_ms: int
) -> InvoiceColumns:
    """The filterable fields of `count` invoices, dates spread over six years up to the anchor."""
    rng = random.Random(f"columns:{profile.seed}:{profile.tenant_index}")
    columns = InvoiceColumns()
    randrange, random_ = rng.randrange, rng.random
    for _ in range(count):
        age = int(HISTORY_DAYS * random_() ** 1.6)  # more recent invoices than old ones
        day = anchor_day - age
        status = _status_for_age(rng, age)
        created_ms = day_to_ms(day) + randrange(28_800_000, 64_800_000)
        touched = created_ms + randrange(0, max(1, min(age, 120)) * 86_400_000)
        updated = min(touched, now_ms - randrange(1_000, 3_600_000))
        columns.append(
            0 if random_() < 0.6 else 1, status, day, updated, randrange(CONTACTS_PER_TENANT)
        )
    return columns


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


def generate_invoice(profile: TenantProfile, columns: InvoiceColumns, index: int) -> InvoiceRecord:
    """The full invoice `index`, consistent with its column values."""
    rng = random.Random(profile.seed * 1_000_003 + profile.tenant_index * 7_919 + index * 104_729)
    type_name = TYPES[columns.type_code[index]]
    status = STATUSES[columns.status_code[index]]
    day = columns.date_day[index]
    updated = columns.updated_ms[index]
    contact_id, contact_name = profile.contacts[columns.contact[index]]
    if rng.random() < 0.85:
        currency, rate = profile.base_currency, Decimal("1.000000")
    else:
        currency = rng.choice([c for c in FOREIGN_CURRENCIES if c != profile.base_currency])
        rate = Decimal(rng.randrange(400_000, 1_900_000)) / Decimal(1_000_000)
    amounts_type = (
        "Exclusive" if rng.random() < 0.8 else ("Inclusive" if rng.random() < 0.6 else "NoTax")
    )
    accounts = profile.revenue_accounts if type_name == "ACCREC" else profile.expense_accounts
    tax_type = (
        "NONE" if amounts_type == "NoTax" else ("OUTPUT" if type_name == "ACCREC" else "INPUT")
    )
    pool = line_pool(profile, type_name, amounts_type, accounts, tax_type)
    lines = [
        pool[rng.randrange(LINE_POOL_SIZE)].with_id(uuid_text(rng.getrandbits(128)))
        for _ in range(min(10, 1 + int(rng.expovariate(0.5))))
    ]
    record = InvoiceRecord(
        index=index,
        invoice_id=invoice_id(profile, index),
        type=type_name,
        number=invoice_number(type_name, index),
        reference=rng.choice(("", f"PO-{rng.randrange(1000, 99999)}", f"Order {index}", "Monthly")),
        contact_id=contact_id,
        contact_name=contact_name,
        date_day=day,
        due_day=day + rng.choice((7, 14, 20, 30, 30, 45, 60)),
        status=status,
        line_amount_types=amounts_type,
        currency_code=currency,
        currency_rate=rate,
        lines=lines,
        payments=[],
        credits=[],
        updated_ms=updated,
        sent_to_contact=status not in ("DRAFT", "DELETED") and rng.random() < 0.7,
        has_attachments=rng.random() < 0.1,
    )
    settle(record, rng)
    return record


LINE_POOL_SIZE = 2048


def line_pool(
    profile: TenantProfile,
    type_name: str,
    amounts_type: str,
    accounts: tuple[tuple[str, str], ...],
    tax_type: str,
) -> list[LineRecord]:
    """The tenant's catalogue of line items for one invoice type and amounts type.

    Invoices draw their lines from it (with fresh LineItemIDs), the way real books repeat the same
    products and prices; it also makes generating a page of invoices cheap."""
    key = (type_name, amounts_type)
    pool = profile.line_pools.get(key)
    if pool is None:
        rng = random.Random(
            f"lines:{profile.seed}:{profile.tenant_index}:{type_name}:{amounts_type}"
        )
        pool = [
            make_line(rng, profile, accounts, tax_type, amounts_type) for _ in range(LINE_POOL_SIZE)
        ]
        profile.line_pools[key] = pool
    return pool


def make_line(
    rng: random.Random,
    profile: TenantProfile,
    accounts: tuple[tuple[str, str], ...],
    tax_type: str,
    amounts_type: str,
) -> LineRecord:
    """One line item with consistent quantity × price, discount, tax and tracking."""
    quantity = (
        Decimal(rng.choice((1, 1, 1, 2, 3, 5, 10, 12)))
        if rng.random() < 0.9
        else (Decimal(rng.randrange(25, 4000)) / 100)
    )
    unit = Decimal(rng.randrange(500, 500_000)) / 100
    discount = Decimal(rng.choice((5, 10, 15))) if rng.random() < 0.1 else None
    gross = quantity * unit
    line_amount = money(gross * (100 - discount) / 100 if discount else gross)
    rate = ZERO if tax_type == "NONE" else profile.tax_rate
    if amounts_type == "Inclusive":
        tax = money(line_amount * rate / (100 + rate))
    else:
        tax = money(line_amount * rate / 100)
    code, acct_id = rng.choice(accounts)
    tracking = []
    for category_id, category, options in profile.tracking:
        if rng.random() < 0.5:
            option_id, option = rng.choice(options)
            tracking.append(
                {
                    "TrackingCategoryID": category_id,
                    "TrackingOptionID": option_id,
                    "Name": category,
                    "Option": option,
                }
            )
    return LineRecord(
        line_item_id=uuid_text(rng.getrandbits(128)),
        description=rng.choice(_PRODUCTS),
        quantity=quantity,
        unit_amount=unit,
        account_code=code,
        account_id=acct_id,
        tax_type=tax_type,
        tax_amount=tax,
        line_amount=line_amount,
        item_code=f"ITEM-{rng.randrange(100, 999)}" if rng.random() < 0.3 else None,
        discount_rate=discount,
        tracking=tracking,
    )


def settle(record: InvoiceRecord, rng: random.Random) -> None:
    """Payments and credit notes consistent with the status: PAID invoices are paid in full (in up
    to three payments, sometimes with a credit note), about half of AUTHORISED ones in part."""
    total = record.total
    key = f"{record.invoice_id}"
    if record.status == "PAID":
        credited = (
            money(total * Decimal(rng.choice((10, 20, 50))) / 100) if rng.random() < 0.08 else ZERO
        )
        if credited:
            record.credits.append(
                CreditRecord(
                    stable_uuid("credit", key),
                    f"CN-{record.index + 1:06d}",
                    record.date_day + 5,
                    credited,
                )
            )
        remaining = total - credited
        parts = rng.choice((1, 1, 1, 2, 3))
        day = record.date_day
        for n in range(parts):
            amount = (
                remaining if n == parts - 1 else money(remaining / (parts - n) * Decimal("0.9"))
            )
            day += rng.randrange(1, 30)
            record.payments.append(
                PaymentRecord(stable_uuid("payment", key, n), day, amount, record.currency_rate)
            )
            remaining -= amount
        record.fully_paid_day = day
    elif record.status == "AUTHORISED" and rng.random() < 0.45 and total > 1:
        share = Decimal(rng.randrange(10, 90)) / 100
        record.payments.append(
            PaymentRecord(
                stable_uuid("payment", key, 0),
                record.date_day + rng.randrange(1, 30),
                money(total * share),
                record.currency_rate,
            )
        )
