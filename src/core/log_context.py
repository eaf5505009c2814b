"""Fields every log line carries while they are bound: the request id during a request, the
run, connection, organisation and tenant ids during a sync. Context variables, so concurrent
requests and syncs (tasks) each see their own, and tasks they start inherit them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType

_NONE: Mapping[str, str] = MappingProxyType({})
_fields: ContextVar[Mapping[str, str]] = ContextVar("log_fields", default=_NONE)


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Bind `fields` (None values skipped) to every line logged inside the block."""
    bound = {name: str(value) for name, value in fields.items() if value is not None}
    token = _fields.set(MappingProxyType({**_fields.get(), **bound}))
    try:
        yield
    finally:
        _fields.reset(token)


def bound_log_fields() -> Mapping[str, str]:
    """The fields bound where the caller runs."""
    return _fields.get()
