"""`X-Request-ID`: the caller's when it is a sensible token, else a new one, on every answer."""

from __future__ import annotations

import re

import httpx
import pytest

from src.core.request_id import request_id_from


async def test_a_request_without_an_id_gets_a_new_one_each_time(
    client: httpx.AsyncClient,
) -> None:
    first = (await client.get("/healthz")).headers["x-request-id"]
    second = (await client.get("/healthz")).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


async def test_the_callers_id_comes_back_on_successes_and_errors(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/healthz", "/external-accounting/invoices", "/no-such-route"):
        response = await client.get(path, headers={"X-Request-ID": "job-42.retry:1"})
        assert response.headers["x-request-id"] == "job-42.retry:1", path
        assert response.headers.get_list("x-request-id") == ["job-42.retry:1"]


@pytest.mark.parametrize("sent", ["", "has space", "x" * 129, 'quote"d', "new\nline", "ünïcode"])
def test_an_id_that_could_forge_or_flood_a_log_line_is_replaced(sent: str) -> None:
    replaced = request_id_from(sent)
    assert replaced != sent
    assert re.fullmatch(r"[0-9a-f]{32}", replaced)
