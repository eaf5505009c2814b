"""Running the sandbox: in a background thread (tests, the demo) or as a subprocess (benchmarks,
so its CPU and memory are measured apart from the sync's)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from types import TracebackType

import httpx
import uvicorn

from src.xero_sandbox.app import create_sandbox_app
from src.xero_sandbox.config import SandboxConfig
from src.xero_sandbox.runtime import SandboxRuntime


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(base_url: str, timeout_s: float = 60.0) -> None:
    """Block until the sandbox answers its health check."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/_sandbox/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"the sandbox at {base_url} did not start within {timeout_s} s")


class RunningSandbox:
    """A sandbox served by uvicorn in a daemon thread of this process."""

    def __init__(self, config: SandboxConfig, port: int | None = None, host: str = "127.0.0.1"):
        self.config = config
        self.port = port or free_port()
        self.base_url = f"http://{host}:{self.port}"
        self.app = create_sandbox_app(config)
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, host=host, port=self.port, log_level="warning", lifespan="on")
        )
        self._thread = threading.Thread(target=self._serve, name="xero-sandbox", daemon=True)

    @property
    def runtime(self) -> SandboxRuntime:
        runtime: SandboxRuntime = self.app.state.sandbox
        return runtime

    def _serve(self) -> None:
        asyncio.run(self._server.serve())

    def start(self) -> RunningSandbox:
        self._thread.start()
        wait_until_up(self.base_url)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> RunningSandbox:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_sandbox_in_thread(config: SandboxConfig, port: int | None = None) -> RunningSandbox:
    """Start a sandbox in a background thread and wait until it answers."""
    return RunningSandbox(config, port).start()


class SandboxProcess:
    """A sandbox in its own process, started through the CLI."""

    def __init__(self, config: SandboxConfig, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        args = [
            sys.executable,
            "-m",
            "src.cli",
            "sandbox",
            "serve",
            "--port",
            str(self.port),
            "--tenants",
            str(config.tenants),
            "--invoices",
            str(config.invoices),
            "--seed",
            str(config.seed),
            "--time-scale",
            str(config.time_scale),
            "--latency-ms",
            str(config.latency_ms),
            "--access-token-ttl",
            str(config.access_token_ttl_s),
        ]
        if config.accounts is not None:
            args += ["--accounts", str(config.accounts)]
        if config.webhook_url is not None:
            args += ["--webhook-url", config.webhook_url]
        if config.webhook_key is not None:
            args += ["--webhook-key", config.webhook_key]
        args += ["--webhook-batch-window", str(config.webhook_batch_window_s)]
        args += ["--webhook-max-attempts", str(config.webhook_max_attempts)]
        args.append("--auto-approve" if config.auto_approve else "--no-auto-approve")
        args.append("--limits" if config.limits_enabled else "--no-limits")
        self.process = subprocess.Popen(args, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            wait_until_up(self.base_url, timeout_s=600)
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_sandbox_process(config: SandboxConfig, port: int | None = None) -> SandboxProcess:
    """Start a sandbox subprocess and wait until it answers."""
    return SandboxProcess(config, port)
