"""The audit log (issue 24 §4): every key, user, source and configuration change, and message send
commands, recorded with who, what, when and from where; listed by `omniweave audit` and GET /v1/audit;
append-only, enforced by the store itself (triggers on SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from omniweave.errors import InputError
from omniweave.privacy import roles
from omniweave.privacy.service import access, audit
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.shells.api.app import create_app
from omniweave.shells.cli.main import app as cli_app


def cli(home: Path, *args: str, input: str | None = None) -> Any:
    done = CliRunner().invoke(cli_app, ["--home", str(home), *args], input=input, env={"COLUMNS": "120"})
    return done


@pytest.fixture
def store_runtime(opstore_url: str, tmp_path: Path) -> Any:
    runtime = Runtime(Settings(home=str(tmp_path / "home"), database_url=opstore_url))
    yield runtime
    runtime.close()


def test_the_log_is_append_only_in_the_store_itself(store_runtime: Runtime) -> None:
    first = audit.record(store_runtime, "cli:test", "config.change", "settings", {"rate_limit": 5}, "cli@here")
    engine = store_runtime.store.engine
    statements = ["UPDATE audit_log SET actor = 'someone-else'", "DELETE FROM audit_log"]
    if engine.dialect.name == "postgresql":
        statements.append("TRUNCATE audit_log")
    for statement in statements:
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as conn:
            conn.execute(sa.text(statement))
    page = audit.entries(store_runtime)
    assert [e.to_dict() for e in page.entries] == [first.to_dict()]
    assert page.entries[0].actor == "cli:test" and page.entries[0].detail == {"rate_limit": 5}


def test_entries_filter_and_page(store_runtime: Runtime) -> None:
    for n in range(5):
        audit.record(store_runtime, f"user:u{n % 2}@staff.example", "key.create", f"key:{n}", {"n": n}, "10.0.0.1")
    audit.record(store_runtime, "cli:ops", "source.disable", "source:s1", {}, "cli@host")
    newest = audit.entries(store_runtime, limit=2)
    assert [e.target for e in newest.entries] == ["source:s1", "key:4"] and newest.more
    older = audit.entries(store_runtime, limit=10, before_seq=newest.entries[-1].seq)
    assert [e.target for e in older.entries] == ["key:3", "key:2", "key:1", "key:0"] and not older.more
    assert [e.target for e in audit.entries(store_runtime, action="key.", actor="user:u1@staff.example").entries] == [
        "key:3",
        "key:1",
    ]
    assert audit.entries(store_runtime, since=time.time() + 60).entries == ()
    with pytest.raises(InputError) as bad:
        audit.entries(store_runtime, action="key.made")
    assert bad.value.field == "action" and "key.create" in str(bad.value)
    with pytest.raises(InputError) as unknown:
        audit.record(store_runtime, "cli:ops", "drop.everything", "x")
    assert unknown.value.field == "action"


def test_cli_key_user_and_source_commands_are_recorded_and_listed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    made = cli(home, "keys", "create", "--source", "web")
    assert made.exit_code == 0, made.output
    secret = cli(home, "keys", "secret", "--name", "reporting", "--scope", "profiles:read")
    assert secret.exit_code == 0, secret.output
    key = secret.stdout.strip().splitlines()[-1]
    prefix = key.split("_")[1]
    assert cli(home, "keys", "disable", "web").exit_code == 0
    assert cli(home, "keys", "enable", "web").exit_code == 0
    added = cli(
        home, "users", "add", "ann@staff.example", "--name", "Ann", "--role", "analyst", input="a long password 1\n" * 2
    )
    assert added.exit_code == 0, added.output
    assert cli(home, "users", "role", "ann@staff.example", "marketer").exit_code == 0
    assert cli(home, "keys", "revoke", prefix).exit_code == 0
    send = cli(home, "messages", "send", "welcome", "--segment", "nobody", "--channel", "email", "--dry-run")
    assert send.exit_code != 0  # no such segment: the command is recorded all the same
    listed = cli(home, "audit", "--format", "json")
    assert listed.exit_code == 0, listed.output
    entries = orjson.loads(listed.stdout)["entries"]
    actions = [e["action"] for e in reversed(entries)]
    assert actions == [
        "source.create",
        "key.create",
        "source.disable",
        "source.enable",
        "user.create",
        "user.role",
        "key.revoke",
        "message.send",
    ]
    assert all(e["actor"].startswith("cli:") and e["origin"].startswith("cli@") for e in entries)
    by_action = {e["action"]: e for e in entries}
    assert by_action["key.create"]["target"] == f"key:{prefix}"
    assert by_action["key.create"]["detail"] == {"name": "reporting", "scopes": ["profiles:read"]}
    assert by_action["user.role"]["detail"] == {"from": "analyst", "to": "marketer"}
    assert by_action["message.send"]["detail"]["segment"] == "nobody"
    assert "a long password" not in listed.stdout  # never recorded
    table = cli(home, "audit", "--action", "key.")
    assert table.exit_code == 0 and "key.create" in table.stdout and "user.role" not in table.stdout
    bad = cli(home, "audit", "--action", "nonsense")
    assert bad.exit_code == 2 and "expected one of" in bad.output


def test_api_changes_are_recorded_with_the_principal_and_the_client_address(tmp_path: Path) -> None:
    settings = Settings(home=str(tmp_path / "home"))
    runtime = Runtime(settings)
    try:
        admin = access.create_api_key(runtime, "ops", list(roles.KEY_SCOPES), actor="cli:test")
        reader = access.create_api_key(runtime, "reader", [roles.PROFILES_READ], actor="cli:test")
        runtime.store.create_source("shop")
        with TestClient(create_app(settings)) as client:
            auth = {"Authorization": f"Bearer {admin.key}", "X-Forwarded-For": "203.0.113.9, 10.0.0.1"}
            made = client.post("/v1/keys", json={"name": "etl", "scopes": ["journeys:run"]}, headers=auth)
            assert made.status_code == 200, made.text
            assert client.delete(f"/v1/keys/{made.json()['prefix']}", headers=auth).status_code == 200
            assert client.post("/v1/sources/shop/disable", headers=auth).status_code == 200
            assert client.post("/v1/sources/nope/disable", headers=auth).status_code == 404
            log = client.get("/v1/audit", params={"limit": 3}, headers=auth)
            assert log.status_code == 200, log.text
            assert client.get("/v1/audit", headers={"Authorization": f"Bearer {reader.key}"}).status_code == 403
            bad = client.get("/v1/audit", params={"action": "nope"}, headers=auth)
            assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "action"
        body = log.json()
        assert body["more"] is True
        newest = body["entries"]
        assert [e["action"] for e in newest] == ["source.disable", "key.revoke", "key.create"]
        assert {e["actor"] for e in newest} == {f"key:{admin.prefix} (ops)"}
        assert {e["origin"] for e in newest} == {"203.0.113.9"}
        assert newest[2]["detail"] == {"name": "etl", "scopes": ["journeys:run"]}
        assert newest[0]["at"].endswith("Z")
    finally:
        runtime.close()
