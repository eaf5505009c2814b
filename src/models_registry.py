"""Imports every domain's models so Alembic sees the whole schema."""

from src.core.database import Base
from src.domains.external_accounting import ledger_models
from src.domains.external_accounting import models as external_accounting_models
from src.domains.organizations import models as organizations_models

metadata = Base.metadata

__all__ = ["external_accounting_models", "ledger_models", "metadata", "organizations_models"]
