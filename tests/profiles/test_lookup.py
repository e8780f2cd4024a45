"""Finding a person by any identifier: `omniweave profile show` and `GET /v1/profiles/...`.

A small demo world runs end to end (collector, importers, resolve, profiles build); then the same
person is looked up by an e-mail written differently, by person id and through the REST API,
which wants a secret key, not a write key.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from omniweave.profiles.service.lookup import find_person, person_view
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.shells.api.app import create_app
from tests.conftest import omniweave_cmd, shared_demo_world


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = shared_demo_world(tmp_path_factory, "lookup", customers=150, days=10, seed=11, bulk=True)
    return home


@pytest.fixture(scope="module")
def buyer(home: Path) -> dict[str, str]:
    """A person who bought something and has an e-mail address."""
    runtime = Runtime(Settings(home=str(home)))
    try:
        rows = (
            runtime.warehouse()
            .sql(
                "SELECT p.person_id, i.value AS email FROM profiles p JOIN identities i "
                "ON i.person_id = p.person_id AND i.kind = 'email' WHERE p.orders > 0 ORDER BY p.person_id LIMIT 1"
            )
            .to_pylist()
        )
    finally:
        runtime.close()
    assert rows, "the demo world has a buyer with an e-mail address"
    return rows[0]


def test_any_spelling_of_an_identifier_finds_the_person(home: Path, buyer: dict[str, str]) -> None:
    runtime = Runtime(Settings(home=str(home)))
    try:
        shouted = f"email:  {buyer['email'].upper()} "
        assert find_person(runtime, shouted) == (buyer["person_id"], f"email:{buyer['email']}")
        assert find_person(runtime, buyer["email"])[0] == buyer["person_id"]  # a bare e-mail
        assert find_person(runtime, buyer["person_id"])[0] == buyer["person_id"]
        assert find_person(runtime, "email:nobody@example.com") is None
        view = person_view(runtime, buyer["person_id"], limit=500)
    finally:
        runtime.close()
    assert view.profile is not None and view.profile["orders"] > 0
    assert {"kind": "email", "value": buyer["email"]} in view.identifiers
    stamps = [event["timestamp"] for event in view.timeline]
    assert stamps == sorted(stamps, reverse=True) and view.timeline
    assert any(event["event"] == "Order Completed" for event in view.timeline)


def test_profile_show_on_the_command_line(home: Path, buyer: dict[str, str]) -> None:
    env = {**os.environ, "OMNIWEAVE_HOME": str(home)}
    shown = subprocess.run(
        omniweave_cmd("profile", "show", f"email:{buyer['email'].upper()}", "--format", "json"),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    body = orjson.loads(shown.stdout)
    assert body["person_id"] == buyer["person_id"] and body["profile"]["orders"] > 0
    missing = subprocess.run(
        omniweave_cmd("profile", "show", "email:nobody@example.com"),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 1 and "nobody has the identifier" in missing.stderr
    malformed = subprocess.run(
        omniweave_cmd("profile", "show", "email:not-an-address"), env=env, capture_output=True, text=True, check=False
    )
    assert malformed.returncode == 2 and "not an e-mail address" in malformed.stderr


def test_the_profiles_api_wants_a_secret_key(home: Path, buyer: dict[str, str]) -> None:
    settings = Settings(home=str(home))
    runtime = Runtime(settings)
    try:
        secret = runtime.store.create_secret_key("test")
        _, write_key = runtime.store.create_source("lookup-web")
    finally:
        runtime.close()
    with TestClient(create_app(settings)) as client:
        path = f"/v1/profiles/{buyer['person_id']}"
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": f"Bearer {write_key}"}).status_code == 403  # collects only
        by_id = client.get(path, headers={"Authorization": f"Bearer {secret}"})
        assert by_id.status_code == 200 and by_id.json()["profile"]["person_id"] == buyer["person_id"]
        by_identifier = client.get(
            "/v1/profiles", params={"identifier": f"email:{buyer['email']}", "limit": 5}, auth=(secret, "")
        )
        assert by_identifier.status_code == 200
        assert by_identifier.json()["person_id"] == buyer["person_id"] and len(by_identifier.json()["timeline"]) <= 5
        unknown = client.get("/v1/profiles", params={"identifier": "email:nobody@example.com"}, auth=(secret, ""))
        assert unknown.status_code == 404
        bad = client.get("/v1/profiles", params={"identifier": "email:not-an-address"}, auth=(secret, ""))
        assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "identifier"
        assert "not an e-mail address" in bad.json()["errors"][0]["reason"]
        assert client.get("/v1/profiles", auth=(secret, "")).status_code == 400
        assert client.get(path, params={"limit": "lots"}, auth=(secret, "")).status_code == 400
