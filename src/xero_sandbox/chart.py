"""The chart of accounts every sandbox tenant starts from, and its rendering as Xero's Accounts."""

from __future__ import annotations

import random
from dataclasses import dataclass

from src.xero_sandbox.records import HISTORY_DAYS, TenantProfile, stable_uuid


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
