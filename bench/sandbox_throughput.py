"""How fast the sandbox serves pages of 1,000 invoices (limits off): it must never be the
bottleneck of a sync benchmark.

Usage: `uv run python bench/sandbox_throughput.py [--invoices N]`."""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx

from src.xero_sandbox.config import SandboxConfig
from src.xero_sandbox.server import start_sandbox_process


async def _measure(base_url: str, pages: int, concurrency: int) -> tuple[float, int]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as control:
        tokens = (await control.post("/_sandbox/tokens", json={})).json()
        tenant = (await control.get("/_sandbox/tenants")).json()[0]["tenant_id"]
    headers = {"Authorization": f"Bearer {tokens['access_token']}", "xero-tenant-id": tenant}
    queue = list(range(1, pages + 1))
    received = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal received
        while queue:
            page = queue.pop(0)
            response = await client.get("/Invoices", params={"page": page, "pageSize": 1000})
            response.raise_for_status()
            received += len(response.json()["Invoices"])

    async with httpx.AsyncClient(
        base_url=f"{base_url}/api.xro/2.0", headers=headers, timeout=60
    ) as client:
        await client.get("/Invoices", params={"page": 1, "pageSize": 1000})  # warm the query cache
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return time.perf_counter() - started, received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=5)
    args = parser.parse_args()
    config = SandboxConfig(tenants=1, invoices=args.invoices, limits_enabled=False)
    sandbox = start_sandbox_process(config)
    try:
        pages = args.invoices // 1000
        for concurrency in (1, args.concurrency):
            seconds, invoices = asyncio.run(_measure(sandbox.base_url, pages, concurrency))
            print(
                f"concurrency {concurrency}: {pages} pages of 1000 in {seconds:.2f} s = "
                f"{pages / seconds:.1f} pages/s, {invoices / seconds:,.0f} invoices/s"
            )
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
