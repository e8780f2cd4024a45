"""`/v1/journeys` and `/v1/persons/{id}/journeys` over the journeys' small world, through the real app."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from omniweave.privacy import roles
from omniweave.privacy.service import access
from omniweave.runtime import Runtime
from omniweave.shells.api.app import create_app
from tests.activate.journeys import conftest as journeys_world

built_world, world = journeys_world.built_world, journeys_world.world  # the small world
pytestmark = pytest.mark.parametrize("opstore_url", ["sqlite"], indirect=True)

INVITE: dict[str, Any] = {
    "name": "invite_api",
    "entry": {"api": True},
    "holdout": 0,
    "start": "wait_day",
    "steps": {
        "wait_day": {"wait": "1d", "next": "email"},
        "email": {"send": {"message": "store_event_invitation", "channel": "email"}, "next": "done"},
        "done": {"exit": "done"},
    },
}


@pytest.fixture
def client(world: Runtime) -> Iterator[tuple[TestClient, dict[str, str], dict[str, str]]]:
    admin = access.create_api_key(world, "ops", list(roles.KEY_SCOPES), actor="cli:test")
    reader = access.create_api_key(world, "reader", [roles.PROFILES_READ], actor="cli:test")
    with TestClient(create_app(world.settings)) as c:
        yield c, {"Authorization": f"Bearer {admin.key}"}, {"Authorization": f"Bearer {reader.key}"}


def test_validate_publish_enter_stats_explain(client: tuple[TestClient, dict[str, str], dict[str, str]]) -> None:
    c, auth, reader = client
    listed = c.get("/v1/journeys", headers=auth)
    assert listed.status_code == 200, listed.text
    assert {"cart_abandonment", "winback"} <= {j["name"] for j in listed.json()}
    assert c.get("/v1/journeys", headers=reader).status_code == 403  # needs journeys:run

    ok = c.post("/v1/journeys/validate", json=INVITE, headers=auth)
    assert ok.status_code == 200 and ok.json() == {"valid": True, "journey": "invite_api", "steps": 3, "problems": []}
    bad = c.post("/v1/journeys/validate", json={**INVITE, "holdout": 3, "start": "nowhere"}, headers=auth)
    assert bad.status_code == 200 and bad.json()["valid"] is False
    assert {p["path"] for p in bad.json()["problems"]} >= {"holdout", "start"}

    published = c.post("/v1/journeys/invite_api/publish", json={"definition": INVITE}, headers=auth)
    assert published.status_code == 200, published.text
    assert published.json() == {"journey": "invite_api", "version": 1, "created": True, "removed_steps": {}, "moved": 0}
    assert c.post("/v1/journeys/invite_api/publish", json={"definition": INVITE}, headers=reader).status_code == 403
    broken = c.post("/v1/journeys/invite_api/publish", json={"definition": {**INVITE, "holdout": 3}}, headers=auth)
    assert broken.status_code == 400 and any(e["field"] == "holdout" for e in broken.json()["errors"])
    assert c.post("/v1/journeys/no_file_here/publish", headers=auth).status_code == 404

    body = {"persons": ["u1", "p2@example.com"], "key": "event-42"}
    entered = c.post("/v1/journeys/invite_api/enter", json=body, headers=auth)
    assert entered.status_code == 200 and entered.json() == {"journey": "invite_api", "entered": 2, "requested": 2}
    again = c.post("/v1/journeys/invite_api/enter", json=body, headers=auth)
    assert again.json()["entered"] == 0  # the same key: nothing new
    unknown = c.post("/v1/journeys/invite_api/enter", json={"persons": ["u1", "ghost"], "key": "k"}, headers=auth)
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["field"] == "person" and "ghost" in unknown.json()["message"]
    assert c.post("/v1/journeys/not_published/enter", json=body, headers=auth).status_code == 404

    stats = c.get("/v1/journeys/invite_api/stats", headers=auth)
    assert stats.status_code == 200
    assert stats.json()["runs"] == {"active": 2} and stats.json()["nodes"][0]["entered"] == 2
    assert c.get("/v1/journeys/not_published/stats", headers=auth).status_code == 404

    explained = c.get("/v1/persons/p1@example.com/journeys", headers=reader)
    assert explained.status_code == 200, explained.text
    doc = explained.json()
    assert doc["person_id"] == "P1" and [r["journey"] for r in doc["runs"]] == ["invite_api"]
    assert doc["runs"][0]["entry_key"] == "api:event-42" and doc["runs"][0]["steps"][0]["outcome"] == "entered"
    assert c.get("/v1/persons/nobody/journeys", headers=reader).status_code == 404
