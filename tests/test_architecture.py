"""The import rules of docs/architecture.md, checked on the source so the document stays true."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
EA = "src.domains.external_accounting"
# Statement builders: SQL is written only where these may be imported.
SQL_BUILDERS = {"select", "update", "delete", "insert", "text", "func", "exists", "or_", "and_"}


def _module(path: Path) -> str:
    return ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> Iterator[tuple[str, set[str]]]:
    """(module imported, names taken from it) for every import statement in `path`."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = {alias.name for alias in node.names}
            yield node.module, names
            for name in names:  # `from package import module`
                yield f"{node.module}.{name}", set()
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, set()


MODULES = {_module(p): p for p in SRC.rglob("*.py")}


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _violations(importers: str, forbidden: tuple[str, ...], allowed: tuple[str, ...]) -> list[str]:
    return [
        f"{module} imports {imported}"
        for module, path in sorted(MODULES.items())
        if _within(module, (importers,)) and module not in allowed
        for imported, _ in _imports(path)
        if _within(imported, forbidden)
    ]


@pytest.mark.parametrize(
    ("importers", "forbidden", "allowed"),
    [
        # The emulator stands for Xero: it shares nothing with the service it tests.
        ("src.xero_sandbox", ("src.domains", "src.core", "src.main", "src.cli"), ()),
        # Organisations, users and keys know nothing of accounting.
        ("src.domains.organizations", (EA,), ()),
        # The provider-neutral packages never name a provider; the factory is where one is chosen.
        (f"{EA}.ledger", (f"{EA}.xero", f"{EA}.base.factory"), ()),
        (f"{EA}.connections", (f"{EA}.xero",), ()),
        (f"{EA}.syncs", (f"{EA}.xero",), ()),
        (f"{EA}.schedules", (f"{EA}.xero",), ()),
        (f"{EA}.reconciliation", (f"{EA}.xero",), ()),
        (f"{EA}.outbound", (f"{EA}.xero",), ()),
        (f"{EA}.base", (f"{EA}.xero",), (f"{EA}.base.factory",)),
        # Xero's two halves meet only through the protocols of base/.
        (f"{EA}.xero.auth", (f"{EA}.xero.data",), ()),
        (f"{EA}.xero.data", (f"{EA}.xero.auth",), ()),
        # The webhook receiver drives xero/data's targeted syncs; tokens reach it the same way.
        (f"{EA}.xero.webhooks", (f"{EA}.xero.auth",), ()),
        (f"{EA}.xero.data", (f"{EA}.xero.webhooks",), ()),
        # The console calls the services the API calls; a provider's accounting half and its
        # webhook receiver are none of its business (connect links are xero/auth's).
        ("src.domains.console", (f"{EA}.xero.data", f"{EA}.xero.webhooks", "src.main"), ()),
        # Nothing below the composition roots depends on the console.
        ("src.domains.external_accounting", ("src.domains.console",), ()),
        ("src.domains.organizations", ("src.domains.console",), ()),
    ],
)
def test_packages_import_only_what_the_architecture_allows(
    importers: str, forbidden: tuple[str, ...], allowed: tuple[str, ...]
) -> None:
    assert _violations(importers, forbidden, allowed) == []


def test_sql_is_written_only_in_repositories_and_models() -> None:
    offenders = []
    for module, path in sorted(MODULES.items()):
        if not module.startswith("src.domains") or module.endswith((".repository", ".models")):
            continue
        for imported, names in _imports(path):
            if imported.startswith("sqlalchemy") and names & SQL_BUILDERS:
                offenders.append(f"{module}: {sorted(names & SQL_BUILDERS)} from {imported}")
        if ".execute(" in path.read_text():
            offenders.append(f"{module}: executes a statement")
    assert offenders == []


def test_the_rules_see_the_code() -> None:
    """The checks above would pass vacuously if the walk found nothing."""
    assert f"{EA}.base.factory" in MODULES
    factory_imports = {imported for imported, _ in _imports(MODULES[f"{EA}.base.factory"])}
    assert any(i.startswith(f"{EA}.xero") for i in factory_imports)
