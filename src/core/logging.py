"""Logging set-up: plain lines for people, JSON lines for machines, secrets never printed; every
line carries the fields bound in `log_context` (request id, run / connection / tenant ids)."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from src.core.log_context import bound_log_fields

# Anything that looks like a bearer token, a JWT, one of our API keys or a secret-named field
# (`access_token=...`, `"refresh_token": "..."`, `'code': '...'`) is masked before output: a last
# line of defence, the code itself never logs secrets on purpose.
_SECRET_NAMES = (
    r"access_token|refresh_token|id_token|client_secret|code_verifier|api_key|code|state"
)
# A key or value may be quoted, and inside a JSON line a quote is escaped (`\"`).
_QUOTE = r"(?:\\?[\"'])?"
_VALUE = r"[^\s\"'&,}\\]+"
_SECRET_PATTERNS = [
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"), "***"),
    # Our API keys, `lsk_<prefix>_<secret>`: the prefix identifies the key and is not secret.
    (re.compile(r"\b(lsk_[0-9a-f]{12}_)[A-Za-z0-9_-]{8,}"), r"\1***"),
    # An Authorization header or field, whatever its scheme (Basic carries the client secret).
    (
        re.compile(
            rf"(?i)(\bauthorization{_QUOTE}\s*[=:]\s*{_QUOTE})(?:(?:bearer|basic)\s+)?{_VALUE}"
        ),
        r"\1***",
    ),
    (
        re.compile(rf"(?i)(\b(?:{_SECRET_NAMES}){_QUOTE}\s*[=:]\s*{_QUOTE}){_VALUE}"),
        r"\1***",
    ),
]

# `color_message` is uvicorn's ANSI-coloured copy of the message.
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


def redact(text: str) -> str:
    """Mask token-like substrings."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class AccessLogFilter(logging.Filter):
    """uvicorn's access log line without the query string: the OAuth callback's carries the
    authorization code and the state, and other routes' carry customer data (contact ids)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


# uvicorn's access line: `'%s - "%s %s HTTP/%s" %d'` with these arguments.
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The bound fields, then the line's own `extra=` fields (which win)."""
    fields: dict[str, Any] = dict(bound_log_fields())
    fields.update((k, v) for k, v in record.__dict__.items() if k not in _RESERVED)
    return fields


def _access_fields(record: logging.LogRecord) -> dict[str, Any]:
    """uvicorn's access line as fields (its path already without the query string)."""
    args = record.args
    if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
        return dict(zip(_ACCESS_FIELDS, args, strict=True))
    return {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the `extra=` fields as keys."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **_access_fields(record),
            **_extras(record),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(payload, default=str))


class TextFormatter(logging.Formatter):
    """A human line with `key=value` extras."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = (
            f"{self.formatTime(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        )
        if extras:
            line += f" {extras}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


def configure_logging(level: str = "INFO", *, json_lines: bool = False) -> None:
    """Install one stderr handler on the root logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO; keep it quiet unless debugging.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # However uvicorn was started (`ledgersync serve` or by hand), its access log drops queries.
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, AccessLogFilter) for f in access.filters):
        access.addFilter(AccessLogFilter())


def uvicorn_log_config(*, json_lines: bool = False) -> dict[str, Any]:
    """uvicorn's logging through our formatters (so redaction applies to its lines too), with
    the access log's query strings dropped."""
    formatter = "src.core.logging.JsonFormatter" if json_lines else "src.core.logging.TextFormatter"
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "ledgersync",
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"ledgersync": {"()": formatter}},
        "filters": {"no_query": {"()": "src.core.logging.AccessLogFilter"}},
        "handlers": {
            "default": handler,
            "access": {**handler, "filters": ["no_query"]},
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }
