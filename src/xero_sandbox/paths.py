"""Xero matches its paths without regard to case: its SDKs call `/Connections` and
`/Connections/{id}`, and `/api.xro/2.0/invoices` answers like `/Invoices`. The sandbox's routes
are spelt one way, so this middleware rewrites each request's literal path segments to the
route's spelling before routing (and before the accounting guard, which looks for the prefix)."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

Template = tuple[str | None, ...]  # a literal segment, or None for a `{parameter}`


def _template(route_path: str) -> Template:
    return tuple(
        None if part.startswith("{") else part for part in route_path.strip("/").split("/")
    )


class XeroPathCase:
    """Rewrites `/API.XRO/2.0/invoices/...` to `/api.xro/2.0/Invoices/...` for Xero's routes
    (the control API under `/_sandbox` is the sandbox's own and keeps one spelling)."""

    def __init__(self, app: ASGIApp, route_paths: Iterable[str]) -> None:
        self.app = app
        self.templates: dict[int, list[Template]] = {}
        for path in route_paths:
            template = _template(path)
            self.templates.setdefault(len(template), []).append(template)
        for candidates in self.templates.values():
            # Most literal segments first, so `/Invoices/{ref}` never hides a longer literal route.
            candidates.sort(key=lambda t: sum(part is None for part in t))

    def canonical(self, path: str) -> str | None:
        """The route's spelling of `path`, or None when it needs no rewrite (or matches none)."""
        parts = path.strip("/").split("/")
        lowered = [part.lower() for part in parts]
        for template in self.templates.get(len(parts), ()):
            if all(t is None or t.lower() == p for t, p in zip(template, lowered, strict=True)):
                spelt = [p if t is None else t for t, p in zip(template, parts, strict=True)]
                canonical = "/" + "/".join(spelt)
                return None if canonical == path else canonical
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            canonical = self.canonical(scope["path"])
            if canonical is not None:
                scope = {**scope, "path": canonical}
        await self.app(scope, receive, send)
