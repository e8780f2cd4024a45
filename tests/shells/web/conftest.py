"""The dashboard served on a copy of the shared demo world (tests/conftest.py `demo_home`), with one user per
role; `Dashboard.client(role)` is an httpx client signed in as that role through the sign-in form."""

from __future__ import annotations

import gc
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from omniweave.privacy.roles import ROLES
from omniweave.privacy.service import access
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.shells.api.app import create_app

PASSWORD = "correct horse battery"
TIMEOUT = 120.0


def email_of(role: str) -> str:
    return f"{role.replace('_', '-')}@example.com"


@dataclass
class Dashboard:
    base_url: str
    home: Path

    def client(self, role: str | None) -> httpx.Client:
        """A client signed in as the user of `role` (None: not signed in)."""
        client = httpx.Client(base_url=self.base_url, timeout=TIMEOUT, follow_redirects=False)
        if role is not None:
            answer = client.post(
                "/app/login", data={"email": email_of(role), "password": PASSWORD, "next": "/app/overview"}
            )
            assert answer.status_code == 303, answer.text
        return client


def serve_home(home: Path) -> Iterator[str]:
    """`create_app` on `home`, on a free port, in a thread; yields its base URL."""
    app = create_app(Settings(home=str(home)))
    app.state.dashboard_warm = False  # a test opens the pages it checks: no background builds of the others
    app.state.dashboard_refresh_in_background = False  # and sees every change of the data at once
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=60)
    sock.close()
    # the pages opened DuckDB connections (one per runtime.warehouse()): closed now, not in the interpreter's exit,
    # where an Ibis/DuckDB finaliser aborted the process (SIGABRT after every test passed)
    gc.collect()


def add_users(home: Path) -> None:
    runtime = Runtime(Settings(home=str(home)))
    try:
        for role in ROLES:
            access.create_user(runtime, email_of(role), role.replace("_", " ").title(), role, PASSWORD, actor="test")
    finally:
        runtime.close()


@pytest.fixture(scope="session")
def dashboard_home(tmp_path_factory: pytest.TempPathFactory, demo_home: Path) -> Path:
    """A copy of the demo world with one user per role (shared: tests that change it work on a copy)."""
    home = tmp_path_factory.mktemp("dashboard") / "home"
    shutil.copytree(demo_home, home)
    add_users(home)
    return home


@pytest.fixture(scope="session")
def dashboard(dashboard_home: Path) -> Iterator[Dashboard]:
    """The dashboard (with the API) served on the shared copy."""
    for url in serve_home(dashboard_home):
        yield Dashboard(url, dashboard_home)
