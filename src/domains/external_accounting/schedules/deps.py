"""Dependencies of the schedule routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from src.core.deps import SessionDep, SettingsDep
from src.domains.external_accounting.schedules.service import ScheduleService


def get_schedule_service(session: SessionDep, settings: SettingsDep) -> ScheduleService:
    """The schedules service on the request's session."""
    return ScheduleService(session, settings)


ScheduleServiceDep = Annotated[ScheduleService, Depends(get_schedule_service)]
