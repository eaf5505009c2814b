"""The generated data is deterministic, realistic and internally consistent, and costs nothing until
an invoice is read."""

from __future__ import annotations

from collections import Counter

from src.xero_sandbox.records import STATUSES, InvoiceRecord
from src.xero_sandbox.store import SandboxStore


def test_same_seed_same_data_other_seed_other_data() -> None:
    one, two, other = (SandboxStore.generate(1, 50, seed) for seed in (7, 7, 8))

    def first(store: SandboxStore) -> InvoiceRecord:
        return next(iter(store.tenants.values())).invoice(10)

    assert first(one) == first(two)
    assert first(one).invoice_id != first(other).invoice_id


def test_invoices_are_varied_and_their_totals_add_up() -> None:
    tenant = next(iter(SandboxStore.generate(1, 2000, 7).tenants.values()))
    records = [tenant.invoice(i) for i in range(tenant.invoice_count)]
    assert set(Counter(r.status for r in records)) == set(STATUSES)
    assert {r.type for r in records} == {"ACCREC", "ACCPAY"}
    assert len({r.currency_code for r in records}) >= 3
    assert {len(r.lines) for r in records} >= {1, 2, 3, 5}
    assert max(r.date_day for r in records) - min(r.date_day for r in records) > 4 * 365
    assert any(r.status == "AUTHORISED" and 0 < r.amount_paid < r.total for r in records)
    assert any(r.amount_credited > 0 for r in records)
    assert any(line.tracking for r in records for line in r.lines)
    for r in records:
        assert r.total == r.sub_total + r.total_tax
        if r.status == "PAID":
            assert r.amount_due == 0
            assert r.fully_paid_day is not None
        elif r.status not in ("VOIDED", "DELETED"):
            assert r.amount_due == r.total - r.amount_paid - r.amount_credited


def test_generation_scales_without_materialising_invoices() -> None:
    store = SandboxStore.generate(1, 200_000, 7)
    tenant = next(iter(store.tenants.values()))
    assert tenant.invoice_count == 200_000
    assert tenant.overrides == {}
    assert tenant.index_of(tenant.invoice(199_999).invoice_id) == 199_999
