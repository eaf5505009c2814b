"""The process-wide collector tuning: applied by the resources every process builds."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet

from src.core.crypto import TokenCipher
from src.core.runtime import FIRST_GENERATION_THRESHOLD, tune_garbage_collector
from src.core.settings import Settings
from src.domains.external_accounting.base.factory import service_resources


@pytest.fixture
def untuned() -> Iterator[None]:
    """CPython's defaults, as a process starts; whatever this process had is put back."""
    threshold = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(700, threshold[1], threshold[2])
    tune_garbage_collector.cache_clear()
    yield
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("untuned")
async def test_the_resources_freeze_the_start_up_state_and_raise_the_first_threshold(
    database_url: str,
) -> None:
    settings = Settings(
        environment="test", database_url=database_url, token_encryption_keys=Fernet.generate_key()
    )
    async with service_resources(settings, TokenCipher.from_settings(settings)):
        assert gc.get_threshold()[0] == FIRST_GENERATION_THRESHOLD
        assert gc.get_freeze_count() > 0
    gc.unfreeze()
    gc.set_threshold(700)
    tune_garbage_collector()  # once per process: the resources of a second app change nothing
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold()[0] == 700
