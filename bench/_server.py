"""`omniweave serve` on a home, for the benchmarks that post to the real collector (ingest, segments)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`python -m omniweave serve` on a fresh home."""

    def __init__(self, home: Path, env: dict[str, str] | None = None):
        self.env = {**os.environ, "OMNIWEAVE_HOME": str(home), **(env or {})}
        created = subprocess.run(
            [sys.executable, "-m", "omniweave", "keys", "create", "--source", "bench"],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        self.write_key = created.stdout.strip().splitlines()[-1]
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "omniweave", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.process.kill()
        raise RuntimeError("omniweave serve did not start")

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.base_url}/health", timeout=30).json()  # type: ignore[no-any-return]

    def wait_for_loader(self, timeout: float = 300) -> float:
        """Wait until the loader has moved the whole inbox to the event log; returns seconds waited."""
        started = time.monotonic()
        while self.health()["loader"]["lag"] > 0 and time.monotonic() - started < timeout:
            time.sleep(0.2)
        return time.monotonic() - started

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=300)
        except subprocess.TimeoutExpired:
            self.process.kill()
