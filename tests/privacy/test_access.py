"""Keys, users, roles and sessions (issue 24 §3) against the real app (create_app, a real SQLite store).

Every principal — the four roles signed in with a session, secret keys with one scope each, a write key —
is tried against every class of route, and must get through (not 401/403) exactly where its role or
scopes allow and a 403 elsewhere. An analyst's profile answers hold no plain e-mail address.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from omniweave.collect.loader import load_all
from omniweave.privacy import roles, sessions
from omniweave.privacy.service import access
from omniweave.privacy.users import hash_password, verify_password
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.shells.api.app import create_app
from omniweave.storage.ops.tables.access import users as user_rows

PASSWORD = "correct horse battery staple"
EMAIL = "ann.customer@example.org"


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


class World:
    def __init__(self, client: TestClient, runtime: Runtime, write_key: str):
        self.client, self.runtime, self.write_key = client, runtime, write_key

    def login(self, email: str, password: str = PASSWORD) -> tuple[TestClient, str]:
        """A fresh client (its own cookie jar, the same running app) signed in as `email`, and its CSRF token."""
        fresh = TestClient(self.client.app, base_url="https://testserver")  # no `with`: the app runs already
        answer = fresh.post("/v1/auth/login", json={"email": email, "password": password})
        assert answer.status_code == 200, answer.text
        return fresh, answer.json()["csrf_token"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One customer with an e-mail in the profiles, users of every role, a write key."""
    home = tmp_path_factory.mktemp("access") / "home"
    settings = Settings(home=str(home))
    runtime = Runtime(settings)
    _, write_key = runtime.store.create_source("web")
    for role in roles.ROLES:
        access.create_user(runtime, f"{role}@staff.example", role.title(), role, PASSWORD, actor="cli:test")
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        auth = {"Authorization": basic(write_key)}
        identify = {"userId": "c-1", "traits": {"email": EMAIL, "first_name": "Annabel"}, "messageId": "m-1"}
        assert client.post("/v1/identify", json=identify, headers=auth).status_code == 200
        track = {"userId": "c-1", "event": "Order Completed", "properties": {"revenue": 10}, "messageId": "m-2"}
        assert client.post("/v1/track", json=track, headers=auth).status_code == 200
        load_all(runtime.store, runtime.log)
        from omniweave.identity.service.resolve import resolve
        from omniweave.profiles.service.build import build_profiles

        resolve(runtime)
        build_profiles(runtime)
        yield World(client, runtime, write_key)
    runtime.close()


# --- every principal against every route class ------------------------------------------------------

# route class → (method, path, JSON body); the body is valid, so a principal let through gets no 401/403
ROUTES: dict[str, tuple[str, str, Any]] = {
    "read profiles": ("GET", f"/v1/profiles?identifier=email:{EMAIL}", None),
    "read segments": ("GET", "/v1/segments", None),
    "manage configuration": ("GET", "/v1/keys", None),
    "create a key": ("POST", "/v1/keys", {"name": "made-in-test", "scopes": ["profiles:read"]}),
    "run journeys": ("GET", "/v1/journeys", None),
    "privacy admin": ("GET", "/v1/audit", None),
    "manage users": ("GET", "/v1/users", None),
}
NEEDS = {
    "read profiles": roles.PROFILES_READ,
    "read segments": roles.PROFILES_READ,
    "manage configuration": roles.CONFIG_MANAGE,
    "create a key": roles.CONFIG_MANAGE,
    "run journeys": roles.JOURNEYS_RUN,
    "privacy admin": roles.PRIVACY_ADMIN,
    "manage users": roles.USERS_MANAGE,
}


def _call(client: TestClient, route: str, headers: dict[str, str]) -> int:
    method, path, body = ROUTES[route]
    return client.request(method, path, json=body, headers=headers).status_code


@pytest.mark.parametrize("role", list(roles.ROLES))
def test_every_role_against_every_route_class(world: World, role: str) -> None:
    client, csrf = world.login(f"{role}@staff.example")
    try:
        for route, scope in NEEDS.items():
            status = _call(client, route, {sessions.CSRF_HEADER: csrf})
            allowed = scope in roles.ROLES[role]
            assert (status not in (401, 403)) if allowed else status == 403, (role, route, status)
            if allowed:
                assert status < 300 or status == 404, (role, route, status)
    finally:
        client.close()


@pytest.mark.parametrize("scope", roles.KEY_SCOPES)
def test_a_key_with_one_scope_opens_only_that_route_class(world: World, scope: str) -> None:
    made = access.create_api_key(world.runtime, f"only-{scope}", [scope], actor="cli:test")
    for route, needed in NEEDS.items():
        status = _call(world.client, route, {"Authorization": f"Bearer {made.key}"})
        assert (status not in (401, 403)) if needed == scope else status == 403, (scope, route, status)


def test_a_key_never_manages_users_and_a_write_key_never_opens_a_secret_route(world: World) -> None:
    with pytest.raises(Exception, match="unknown scope"):
        access.create_api_key(world.runtime, "too-much", [roles.USERS_MANAGE], actor="cli:test")
    for route in ROUTES:
        assert _call(world.client, route, {"Authorization": basic(world.write_key)}) == 403, route
        assert _call(world.client, route, {"Authorization": "Bearer sk_not_a_key"}) == 401, route
        assert _call(world.client, route, {}) == 401, route
    refused = world.client.get("/v1/segments", headers={"Authorization": f"Bearer {world.write_key}"})
    assert refused.json()["errors"][0]["field"] == "Authorization"
    assert "write key only collects" in refused.json()["message"]


def test_the_collector_takes_write_keys_only(world: World) -> None:
    made = access.create_api_key(world.runtime, "secret-on-collector", list(roles.KEY_SCOPES), actor="cli:test")
    event = {"userId": "c-2", "event": "Seen"}
    assert (
        world.client.post("/v1/track", json=event, headers={"Authorization": basic(world.write_key)}).status_code == 200
    )
    assert world.client.post("/v1/track", json=event, headers={"Authorization": basic(made.key)}).status_code == 401


# --- what an analyst sees -------------------------------------------------------------------------


def test_an_analyst_never_sees_a_plain_email(world: World) -> None:
    owner, _ = world.login("owner@staff.example")
    analyst, _ = world.login("analyst@staff.example")
    try:
        plain = owner.get("/v1/profiles", params={"identifier": f"email:{EMAIL}"})
        assert plain.status_code == 200 and EMAIL in plain.text  # the owner does see it
        for path in ("/v1/profiles", f"/v1/profiles/{plain.json()['person_id']}", f"/v1/profiles/email:{EMAIL}"):
            params = {"identifier": f"email:{EMAIL}"} if path == "/v1/profiles" else None
            masked = analyst.get(path, params=params)
            assert masked.status_code == 200, masked.text
            assert EMAIL not in masked.text and "ann.customer" not in masked.text
            assert "Annabel" not in masked.text
            assert "a***@e***.org" in masked.text
    finally:
        owner.close()
        analyst.close()


# --- sessions, CSRF, passwords --------------------------------------------------------------------


def test_the_session_cookie_is_secure_httponly_samesite(world: World) -> None:
    answer = world.client.post("/v1/auth/login", json={"email": "marketer@staff.example", "password": PASSWORD})
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{sessions.COOKIE_NAME}=")
    for attribute in ("HttpOnly", "SameSite=Lax", "Secure", "Path=/"):
        assert attribute in cookie
    plain_http = TestClient(world.client.app, base_url="http://localhost")
    dev = plain_http.post("/v1/auth/login", json={"email": "marketer@staff.example", "password": PASSWORD})
    assert "Secure" not in dev.headers["set-cookie"]  # http://localhost development only


def test_a_change_in_a_session_needs_the_csrf_token(world: World) -> None:
    client, csrf = world.login("owner@staff.example")
    try:
        body = {"name": "csrf-test", "scopes": ["profiles:read"]}
        forged = client.post("/v1/keys", json=body)
        assert forged.status_code == 403 and forged.json()["errors"][0]["field"] == sessions.CSRF_HEADER
        assert client.post("/v1/keys", json=body, headers={sessions.CSRF_HEADER: "0" * 64}).status_code == 403
        assert client.post("/v1/keys", json=body, headers={sessions.CSRF_HEADER: csrf}).status_code == 200
        assert client.get("/v1/auth/me").json()["role"] == "owner"  # reads need no token
        assert client.post("/v1/auth/logout", headers={sessions.CSRF_HEADER: csrf}).status_code == 200
        assert client.get("/v1/auth/me").status_code == 401
    finally:
        client.close()


def test_passwords_are_argon2_hashes_and_wrong_ones_are_refused(world: World) -> None:
    with world.runtime.store.engine.connect() as conn:
        stored = conn.execute(sa.select(user_rows.c.password_hash)).scalars().all()
    assert stored and all(h.startswith("$argon2id$") and PASSWORD not in h for h in stored)
    assert verify_password(hash_password(PASSWORD), PASSWORD)
    assert not verify_password(stored[0], "wrong password here")
    assert not verify_password("not a hash", PASSWORD)
    wrong = world.client.post("/v1/auth/login", json={"email": "owner@staff.example", "password": "nope nope nope"})
    assert wrong.status_code == 401 and wrong.json()["errors"][0]["field"] == "password"
    short = world.client.post(
        "/v1/users",
        json={"email": "x@staff.example", "name": "X", "role": "owner", "password": "short"},
        headers={
            "Authorization": f"Bearer {access.create_api_key(world.runtime, 'k', ['config:manage'], actor='t').key}"
        },
    )
    assert short.status_code == 403  # a key never manages users


def test_bad_user_input_names_the_field(world: World) -> None:
    client, csrf = world.login("owner@staff.example")
    try:
        cases = [
            ({"email": "not-an-address", "name": "A", "role": "owner", "password": PASSWORD}, "email"),
            ({"email": "b@staff.example", "name": "B", "role": "admin", "password": PASSWORD}, "role"),
            ({"email": "c@staff.example", "name": "C", "role": "analyst", "password": "short"}, "password"),
            ({"email": "owner@staff.example", "name": "D", "role": "analyst", "password": PASSWORD}, "email"),
        ]
        for body, field in cases:
            answer = client.post("/v1/users", json=body, headers={sessions.CSRF_HEADER: csrf})
            assert answer.status_code == 400, answer.text
            assert answer.json()["errors"][0]["field"] == field, answer.text
    finally:
        client.close()


def test_a_disabled_user_loses_their_sessions_and_cannot_sign_in(world: World) -> None:
    access.create_user(world.runtime, "leaver@staff.example", "Leaver", "marketer", PASSWORD, actor="cli:test")
    client, _ = world.login("leaver@staff.example")
    try:
        assert client.get("/v1/segments").status_code == 200
        access.disable_user(world.runtime, "leaver@staff.example", actor="cli:test")
        assert client.get("/v1/segments").status_code == 401
    finally:
        client.close()
    again = world.client.post("/v1/auth/login", json={"email": "leaver@staff.example", "password": PASSWORD})
    assert again.status_code == 401


def test_a_role_change_takes_effect_at_the_next_request(world: World) -> None:
    access.create_user(world.runtime, "mover@staff.example", "Mover", "analyst", PASSWORD, actor="cli:test")
    client, _ = world.login("mover@staff.example")
    try:
        assert client.get("/v1/audit").status_code == 403
        access.set_role(world.runtime, "mover@staff.example", "privacy_officer", actor="cli:test")
        assert client.get("/v1/audit").status_code == 200
    finally:
        client.close()


# --- sources ----------------------------------------------------------------------------------------


def test_a_disabled_source_answers_404_and_comes_back_when_enabled(tmp_path: Path) -> None:
    settings = Settings(home=str(tmp_path / "home"))
    runtime = Runtime(settings)
    try:
        _, write_key = runtime.store.create_source("shop")
        access.set_source_enabled(runtime, "shop", False, actor="cli:test")
        auth = {"Authorization": basic(write_key)}
        with TestClient(create_app(settings)) as client:
            refused = client.post("/v1/track", json={"userId": "u", "event": "E"}, headers=auth)
            assert refused.status_code == 404, refused.text
            assert refused.json()["code"] == "not_found" and refused.json()["errors"][0]["field"] == "writeKey"
            in_body = client.post("/v1/t", content=f'{{"writeKey":"{write_key}","userId":"u","event":"E"}}')
            assert in_body.status_code == 404
            assert client.get(f"/v1/projects/{write_key}/settings").status_code == 404
            access.set_source_enabled(runtime, "shop", True, actor="cli:test")
            deadline = time.monotonic() + 15  # the collector's key cache lives 5 s
            while (
                status := client.post("/v1/track", json={"userId": "u", "event": "E"}, headers=auth).status_code
            ) != 200:
                assert status == 404 and time.monotonic() < deadline
                time.sleep(0.25)
            access.set_source_enabled(runtime, "shop", False, actor="cli:test")
            deadline = time.monotonic() + 15
            while (
                status := client.post("/v1/track", json={"userId": "u", "event": "E"}, headers=auth).status_code
            ) != 404:
                assert status == 200 and time.monotonic() < deadline
                time.sleep(0.25)
        with pytest.raises(access.NotFound, match="no source named"):
            access.set_source_enabled(runtime, "nope", False, actor="cli:test")
    finally:
        runtime.close()
