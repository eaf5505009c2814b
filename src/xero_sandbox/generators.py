"""Deterministic generation of a tenant's identity, invoice columns and invoices.

Invoice `i` of tenant `t` is a pure function of (seed, t, i): the few fields that filters need
(type, status, date, updated time, contact) are generated up front into compact arrays, and the
rest (line items, payments, amounts) is derived on demand from a per-invoice random stream. That is
how a tenant of 1,000,000 invoices costs a few tens of MB and no pre-rendered JSON.
"""

from __future__ import annotations

import random
from decimal import Decimal

from src.xero_sandbox.chart import DEFAULT_CHART, account_id
from src.xero_sandbox.records import (
    HISTORY_DAYS,
    STATUSES,
    TYPES,
    ZERO,
    CreditRecord,
    InvoiceColumns,
    InvoiceRecord,
    LineRecord,
    PaymentRecord,
    TenantProfile,
    invoice_id,
    invoice_number,
    money,
    stable_uuid,
    uuid_text,
)
from src.xero_sandbox.xero_dates import day_to_ms

BASE_CURRENCIES = ("NZD", "AUD", "GBP", "USD")
FOREIGN_CURRENCIES = ("USD", "EUR", "GBP", "AUD", "CAD", "JPY")

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
