"""Imports every domain's models so Alembic sees the whole schema."""

from src.core.database import Base
from src.domains.console import models as console_models
from src.domains.external_accounting.connections import models as connections_models
from src.domains.external_accounting.ledger import models as ledger_models
from src.domains.external_accounting.outbound import models as outbound_models
from src.domains.external_accounting.schedules import models as schedules_models
from src.domains.external_accounting.xero.webhooks import models as webhooks_models
from src.domains.organizations import models as organizations_models

metadata = Base.metadata

__all__ = [
    "connections_models",
    "console_models",
    "ledger_models",
    "metadata",
    "outbound_models",
    "organizations_models",
    "schedules_models",
    "webhooks_models",
]
