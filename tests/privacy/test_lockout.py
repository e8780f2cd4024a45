"""Sign-in lockout (docs/security.md): failed sign-ins per address and per client address, counted from the
audit log, refuse further sign-ins for a while with one answer whether or not the address has an account."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from omniweave.privacy.service import access, audit
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.shells.api.app import create_app

PASSWORD = "correct horse battery staple"
WRONG = "not the password at all"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, Runtime]]:
    settings = Settings(
        home=str(tmp_path / "home"), login_max_failures=3, login_max_failures_per_origin=6, login_lockout_seconds=600
    )
    runtime = Runtime(settings)
    for name in ("ann", "bob", "cy"):
        access.create_user(runtime, f"{name}@staff.example", name.title(), "marketer", PASSWORD, actor="cli:test")
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        yield client, runtime
    runtime.close()


def sign_in(client: TestClient, email: str, password: str, origin: str) -> tuple[int, dict[str, object], str | None]:
    answer = client.post(
        "/v1/auth/login", json={"email": email, "password": password}, headers={"X-Forwarded-For": origin}
    )
    return answer.status_code, answer.json(), answer.headers.get("retry-after")


def test_failed_sign_ins_for_an_address_lock_it_out_whether_or_not_it_has_an_account(
    app: tuple[TestClient, Runtime],
) -> None:
    client, runtime = app
    for _ in range(3):  # the limit: three failures each, from different networks
        assert sign_in(client, "ann@staff.example", WRONG, "10.0.0.1")[0] == 401
        assert sign_in(client, "nobody@staff.example", WRONG, "10.0.0.2")[0] == 401
    # the right password does not help now; the answer is the same for an address with no account
    status, body, retry = sign_in(client, "ann@staff.example", PASSWORD, "10.0.0.3")
    status_unknown, body_unknown, retry_unknown = sign_in(client, "nobody@staff.example", PASSWORD, "10.0.0.4")
    assert status == status_unknown == 429
    assert body == body_unknown
    assert "too many failed sign-ins" in str(body["message"])
    assert retry is not None and retry_unknown is not None and 1 <= int(retry) <= 600
    # another user from the same networks is not affected, and no address is kept in the audit log
    assert sign_in(client, "bob@staff.example", PASSWORD, "10.0.0.1")[0] == 200
    kept = audit.entries(runtime, action="session.login_failed", limit=100).entries
    assert len(kept) == 6 and not any("nobody" in entry.target or "ann@" in entry.target for entry in kept)
    assert len(audit.entries(runtime, action="session.locked_out", limit=100).entries) == 2


def test_many_failures_from_one_network_lock_out_that_network_only(app: tuple[TestClient, Runtime]) -> None:
    client, _ = app
    for i in range(6):  # six different addresses, each under its own limit, from one network
        assert sign_in(client, f"guess{i}@staff.example", WRONG, "192.0.2.7")[0] == 401
    assert sign_in(client, "cy@staff.example", PASSWORD, "192.0.2.7")[0] == 429
    assert sign_in(client, "cy@staff.example", PASSWORD, "198.51.100.1")[0] == 200


def test_a_successful_sign_in_clears_the_count_and_the_lockout_ends(tmp_path: Path) -> None:
    settings = Settings(home=str(tmp_path / "home"), login_max_failures=2, login_lockout_seconds=1.5)
    runtime = Runtime(settings)
    access.create_user(runtime, "dee@staff.example", "Dee", "analyst", PASSWORD, actor="cli:test")
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        assert sign_in(client, "dee@staff.example", WRONG, "10.1.0.1")[0] == 401
        assert sign_in(client, "dee@staff.example", PASSWORD, "10.1.0.1")[0] == 200  # clears the one failure
        assert sign_in(client, "dee@staff.example", WRONG, "10.1.0.1")[0] == 401
        assert sign_in(client, "dee@staff.example", PASSWORD, "10.1.0.1")[0] == 200  # still under 2
        for _ in range(2):
            assert sign_in(client, "dee@staff.example", WRONG, "10.1.0.1")[0] == 401
        assert sign_in(client, "dee@staff.example", PASSWORD, "10.1.0.1")[0] == 429
        time.sleep(1.6)  # the window has passed
        assert sign_in(client, "dee@staff.example", PASSWORD, "10.1.0.1")[0] == 200
    runtime.close()
