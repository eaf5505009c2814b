"""The external-accounting API, served under `/external-accounting` and `/integrations`."""

from __future__ import annotations

from fastapi import APIRouter

from src.domains.external_accounting.connections.routes import router as connections_router
from src.domains.external_accounting.ledger.routes import router as ledger_router
from src.domains.external_accounting.outbound.routes import router as outbound_router
from src.domains.external_accounting.reconciliation.routes import router as reconcile_router
from src.domains.external_accounting.schedules.routes import router as schedules_router
from src.domains.external_accounting.xero.auth.routes import router as xero_auth_router
from src.domains.external_accounting.xero.data.routes import router as xero_data_router
from src.domains.external_accounting.xero.webhooks.routes import router as xero_webhooks_router

router = APIRouter()
router.include_router(xero_auth_router)
router.include_router(connections_router)
router.include_router(schedules_router)
router.include_router(xero_data_router)
router.include_router(xero_webhooks_router)
router.include_router(reconcile_router)
router.include_router(ledger_router)
router.include_router(outbound_router)

PREFIXES = ("/external-accounting", "/integrations")
