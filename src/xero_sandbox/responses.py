"""Response helpers: orjson bodies and Xero's error shapes."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi.responses import Response

from src.xero_sandbox.render import dumps
from src.xero_sandbox.xero_dates import ms_to_xero

PROVIDER_NAME = "ledgersync Xero sandbox"


class JsonResponse(Response):
    """A JSON response serialised with orjson (exact money fragments, fast)."""

    media_type = "application/json; charset=utf-8"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def envelope(
    key: str, items: list[Any], pagination: dict[str, int] | None = None
) -> dict[str, Any]:
    """Xero's response envelope around a list of records."""
    body: dict[str, Any] = {
        "Id": str(uuid.uuid4()),
        "Status": "OK",
        "ProviderName": PROVIDER_NAME,
        "DateTimeUTC": ms_to_xero(time.time_ns() // 1_000_000).replace("+0000", ""),
    }
    if pagination is not None:
        body["pagination"] = pagination
    body[key] = items
    return body


def validation_exception(message: str, status_code: int = 400) -> JsonResponse:
    """Xero's 400 `ValidationException` body."""
    return JsonResponse(
        {
            "ErrorNumber": 10,
            "Type": "ValidationException",
            "Message": "A validation exception occurred",
            "Elements": [{"ValidationErrors": [{"Message": message}]}],
        },
        status_code=status_code,
    )


def problem(status_code: int, title: str, detail: str, **headers: str) -> JsonResponse:
    """Xero's problem-style body used for 401, 403, 404, 429 and 5xx answers."""
    return JsonResponse(
        {"Title": title, "Status": status_code, "Detail": detail},
        status_code=status_code,
        headers=headers or None,
    )
