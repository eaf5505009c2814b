"""The health check's one SQL statement."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


class HealthRepository:
    """Whether the database answers."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def ping(self) -> None:
        """A round trip to the database; raises when it cannot be reached."""
        await self.session.execute(text("SELECT 1"))
