"""Data-subject requests and consent through the services, the REST API and the CLI, on one small world.

Each test acts on a different customer of tests/privacy/world.py, so they do not depend on each other.
"""

from __future__ import annotations

import os
import subprocess
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from fastapi.testclient import TestClient

from omniweave.collect.loader import load_all
from omniweave.privacy.consent import profile_column
from omniweave.privacy.service.consent import consent_of, sync_consent
from omniweave.profiles.service.build import build_profiles
from omniweave.runtime import Runtime
from omniweave.settings import PrivacySettings
from omniweave.shells.api.app import create_app
from omniweave.storage.ops.ledger import Ledger
from tests.conftest import omniweave_cmd
from tests.privacy.world import TARGET, World, basic, build_world, person, person_ids, wait_until


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("privacy-requests"), others=12)


@pytest.fixture(scope="module")
def api(world: World) -> Iterator[tuple[TestClient, dict[str, str], str]]:
    """The app with a blocklist refreshed every second, a secret key's headers and the write key."""
    settings = world.settings.with_overrides(privacy=PrivacySettings(blocklist_refresh_seconds=1.0))
    runtime = Runtime(settings)
    secret = runtime.store.create_secret_key("privacy officer")
    runtime.close()
    with TestClient(create_app(settings)) as client:
        yield client, {"Authorization": f"Bearer {secret}"}, world.write_key


def _cli(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMNIWEAVE_HOME": str(world.home)}
    return subprocess.run(omniweave_cmd(*args), env=env, capture_output=True, text=True, timeout=120)


def _job(client: TestClient, headers: dict[str, str], body: dict[str, str]) -> dict:
    """POST a request: a 202 with its id and status URL at once; then its status, polled until it ended."""
    posted = client.post("/v1/privacy/requests", headers=headers, json=body)
    assert posted.status_code == 202, posted.text
    made = posted.json()
    assert made["status"] == "pending" and made["status_url"] == f"/v1/privacy/requests/{made['id']}"
    assert posted.headers["location"] == made["status_url"]
    seen: dict = {}

    def ended() -> bool:
        seen.update(client.get(made["status_url"], headers=headers).json())
        return seen["status"] in ("done", "failed")

    assert wait_until(ended, timeout=120), seen
    return seen


def test_consent_history_agrees_with_the_profiles(world: World) -> None:
    runtime = Runtime(world.settings)
    try:
        first = sync_consent(runtime)
        assert first.recorded > 0 and sync_consent(runtime).recorded == 0  # a second read records nothing
        profiles = {r["person_id"]: r for r in runtime.warehouse().sql("SELECT * FROM profiles").to_pylist()}
        ids = person_ids(runtime)
        compared = 0
        for i in range(13):
            email = person(i)["email"]
            view = consent_of(runtime, f"email:{email}")
            profile = profiles[ids[email]]
            for purpose in runtime.settings.privacy.purposes:
                column = profile_column(purpose)
                if column in profile:
                    assert view.current.get(purpose) == profile[column], (i, purpose, view.current, profile[column])
                    compared += 1
        target = consent_of(runtime, f"email:{TARGET['email']}")
    finally:
        runtime.close()
    assert compared >= 13 * 5
    # Annabel: yes to e-mail by a trait, then unsubscribed (the suppression list); analytics withdrawn later
    assert target.current["email"] is False and target.current["analytics"] is False
    assert target.current["personalisation"] is True and target.current["advertising"] is True
    assert {s.source for s in target.history} >= {"event", "channel"}
    assert all(s.value not in (TARGET["email"], TARGET["anonymous_id"]) for s in target.history)  # shown masked


def test_consent_through_the_api_reaches_the_profile(world: World, api) -> None:
    client, headers, _ = api
    email = person(2)["email"]
    assert (
        client.post("/v1/privacy/consent", json={"identifier": email, "purpose": "email", "granted": False}).status_code
        == 401
    )
    bad = client.post(
        "/v1/privacy/consent", headers=headers, json={"identifier": email, "purpose": "fax", "granted": True}
    )
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "purpose"
    r = client.post(
        "/v1/privacy/consent",
        headers=headers,
        json={"identifier": f"email:{email}", "purpose": "email", "granted": False},
    )
    assert r.status_code == 200, r.text
    assert r.json()["current"]["email"] is False
    assert r.json()["history"][-1]["source"] == "api"
    r = client.post(
        "/v1/privacy/consent", headers=headers, json={"identifier": email, "purpose": "advertising", "granted": False}
    )
    assert r.status_code == 200
    runtime = Runtime(world.settings)
    try:
        load_all(runtime.store, runtime.log)
        build_profiles(runtime)
        pid = person_ids(runtime)[email]
        [row] = (
            runtime.warehouse()
            .sql(f"SELECT consent_email, consent_purpose_advertising FROM profiles WHERE person_id = '{pid}'")
            .to_pylist()
        )
    finally:
        runtime.close()
    assert row == {"consent_email": False, "consent_purpose_advertising": False}
    shown = client.get("/v1/privacy/consent", headers=headers, params={"identifier": email}).json()
    assert shown["current"]["email"] is False and shown["current"]["advertising"] is False


def test_a_withdrawal_through_the_api_stops_the_next_send_before_profiles_are_rebuilt(world: World, api) -> None:
    """The policy reads the consent history at send time (activate/service/policy.py with_stated_consent): a
    profile built when the person said yes to e-mail does not let a promotional e-mail through once they
    said no through the API — on the one-send path (`check`) and the batch path (`check_many`) alike."""
    from omniweave.activate.policy import SendIntent
    from omniweave.activate.service.policy import check, check_many

    client, headers, _ = api
    email = person(3)["email"]
    runtime = Runtime(world.settings)
    try:
        pid = person_ids(runtime)[email]
        [row] = runtime.warehouse().sql(f"SELECT * FROM profiles WHERE person_id = '{pid}'").to_pylist()
        built = {**row, "consent_email": True, "consent_purpose_marketing": None}  # as built when she said yes

        def verdicts() -> list[str]:
            one = SendIntent(pid, "email", "promotional", key=f"one-{time.time()}")
            many = SendIntent(pid, "email", "promotional", key=f"many-{time.time()}")
            with runtime.store.engine.begin() as conn:
                first = check(conn, runtime, one, built, email, now=time.time())
            with runtime.store.engine.begin() as conn:
                [second] = check_many(conn, runtime, [(many, built, email)], now=time.time())
            return [first.reason, second.reason]

        said = client.post(
            "/v1/privacy/consent", headers=headers, json={"identifier": email, "purpose": "email", "granted": True}
        )
        assert said.status_code == 200, said.text
        assert not any("consent" in reason for reason in verdicts())
        withdrawn = client.post(
            "/v1/privacy/consent", headers=headers, json={"identifier": email, "purpose": "email", "granted": False}
        )
        assert withdrawn.status_code == 200, withdrawn.text
        assert all("no email consent" in reason for reason in verdicts()), verdicts()
        # an older yes in the history never overrules a profile's no (one from an event after the yes) ...
        assert client.post(
            "/v1/privacy/consent", headers=headers, json={"identifier": email, "purpose": "email", "granted": True}
        ).json()["current"]["email"]
        later = datetime.now(UTC) + timedelta(minutes=5)
        built = {**built, "consent_email": False, "last_seen": later}
        assert all("no email consent" in reason for reason in verdicts())
        # ... but a yes stated after every event the profile saw (a double opt-in confirmed since) is newer
        built = {**built, "last_seen": datetime.now(UTC) - timedelta(days=1)}
        assert not any("consent" in reason for reason in verdicts()), verdicts()
        built = {**built, "last_seen": None}  # a profile that does not say when: its no stands
        assert all("no email consent" in reason for reason in verdicts())
    finally:
        runtime.close()


def test_export_by_a_phone_number_holds_everything_about_the_person(world: World, api, tmp_path) -> None:
    client, headers, _ = api
    p = person(9)
    national = "0" + p["phone_e164"][3:]  # the same number as written in the UK
    body = _job(client, headers, {"kind": "export", "identifier": f"phone:{national}"})
    assert body["status"] == "done", body
    fetched = client.get(body["bundle_url"], headers=headers)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "application/json"
    bundle = fetched.json()
    kinds = {i["kind"]: i["value"] for i in bundle["identifiers"]}
    assert kinds["email"] == p["email"] and kinds["user_id"] == p["user_id"] and kinds["device_id"] == p["device_id"]
    channels = {e["channel"] for e in bundle["events"]}
    assert {"web", "app", "store", "email"} <= channels, channels
    assert [row["emails"] for row in bundle["profiles"]] == [[p["email"]]]
    assert [m["to_address"] for m in bundle["messages"]] == [p["email"]]
    assert len(bundle["coupons"]) == 1
    assert bundle["segment_members"], "a buyer online and in store is an omnichannel buyer"
    assert not any(e["user_id"] == person(8)["user_id"] for e in bundle["events"])
    receipts = {x["target"]: x["count"] for x in body["receipts"]}
    assert receipts["export:events"] == len(bundle["events"])
    assert receipts[f"file:privacy/exports/{body['id']}.json"] == 1  # kept for the client, under the home
    # the same through the CLI, as a ZIP
    out = tmp_path / "export.zip"
    done = _cli(world, "privacy", "export", p["email"], "--out", str(out), "--format", "json")
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == ["events.jsonl", "person.json"]
        person_doc = orjson.loads(archive.read("person.json"))
        events = archive.read("events.jsonl").splitlines()
    assert len(events) == len(bundle["events"]) and person_doc["identifiers"] == bundle["identifiers"]
    assert orjson.loads(done.stdout)["kind"] == "export"


def _policy(runtime: Runtime, email: str):
    """The policy engine's verdict on a promotional e-mail to `email` from a person who said yes to e-mail."""
    from omniweave.activate.policy import SendIntent
    from omniweave.activate.service.policy import check

    intent = SendIntent(person_ids(runtime)[email], "email", "promotional", key=f"policy-{time.time()}")
    with runtime.store.engine.begin() as conn:
        return check(conn, runtime, intent, {"consent_email": True}, email, now=time.time())


def test_suppress_from_another_process_refuses_ingest_and_unsuppress_lifts_it(world: World, api) -> None:
    client, headers, write_key = api
    p = person(7)
    post_headers = {"Authorization": basic(write_key), "Content-Type": "application/json"}

    def post(event: dict) -> int:
        return client.post("/v1/batch", content=orjson.dumps({"batch": [event]}), headers=post_headers).status_code

    by_device = {
        "type": "screen",
        "name": "Home",
        "anonymousId": "fresh-install",
        "context": {"device": {"id": p["device_id"].upper()}},
    }
    by_phone = {"type": "identify", "anonymousId": "till-7", "traits": {"phone": "0" + p["phone_e164"][3:]}}
    assert post(by_device) == 200
    done = _cli(world, "privacy", "suppress", f"email:{p['email']}", "--format", "json")  # another process
    assert done.returncode == 0, done.stderr
    result = orjson.loads(done.stdout)
    assert result["status"] == "done" and result["receipts"][0]["target"] == "collector:blocklist"
    assert p["email"] not in done.stdout and p["email"] not in done.stderr  # shown masked
    runtime = Runtime(world.settings)
    try:  # no message goes to her addresses either (the policy's suppression rule)
        assert Ledger(runtime.store.engine).suppression("email", p["email"]) == "privacy"
        assert Ledger(runtime.store.engine).suppression("sms", p["phone_e164"]) == "privacy"
        assert "suppressed (privacy)" in _policy(runtime, p["email"]).reason
    finally:
        runtime.close()
    assert wait_until(lambda: post(by_device) == 400, timeout=10)
    assert post(by_phone) == 400
    assert post({"type": "track", "event": "X", "userId": person(6)["user_id"]}) == 200
    lifted = _job(client, headers, {"kind": "unsuppress", "identifier": p["user_id"]})
    assert lifted["status"] == "done" and lifted["receipts"][0]["action"] == "unblocked"
    assert wait_until(lambda: post(by_device) == 200, timeout=10)
    runtime = Runtime(world.settings)
    try:
        assert Ledger(runtime.store.engine).suppression("email", p["email"]) is None
        assert "suppressed" not in _policy(runtime, p["email"]).reason
    finally:
        runtime.close()
    listed = client.get("/v1/privacy/requests", headers=headers).json()
    assert {"suppress", "unsuppress"} <= {x["kind"] for x in listed}
    one = client.get(f"/v1/privacy/requests/{result['id']}", headers=headers)
    assert one.status_code == 200 and one.json()["receipts"]
    assert client.get("/v1/privacy/requests/dsr_nope", headers=headers).status_code == 404


def test_bad_requests_name_the_field_and_hide_the_value(api) -> None:
    client, headers, write_key = api
    r = client.post(
        "/v1/privacy/requests", headers=headers, json={"kind": "delete", "identifier": "email:not-an-email"}
    )
    assert r.status_code == 400
    problem = r.json()["errors"][0]
    assert problem["field"] == "identifier" and "not-an-email" not in r.text
    erase = client.post("/v1/privacy/requests", headers=headers, json={"kind": "erase", "identifier": "x"})
    assert erase.status_code == 400 and "kind" in erase.json()["errors"][0]["field"]
    wrong = client.get("/v1/privacy/requests", headers={"Authorization": basic(write_key)})
    assert wrong.status_code in (401, 403)  # a write key never opens a privacy route
