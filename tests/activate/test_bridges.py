"""Offline <-> online bridges for journeys: an RSVP link in a store event invitation (GET shows the page and
records nothing, POST records one `Store Event RSVP` for the recipient however often it is pressed, a forged
token gets 404), and e-mail captured at the till linked to the loyalty card's person with its consent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
from fastapi.testclient import TestClient

from omniweave.activate.service.bridges import record_rsvp, rsvp_link
from omniweave.channels import links
from omniweave.collect.emit import emit
from omniweave.collect.loader import load_all
from omniweave.collect.service import import_file
from omniweave.errors import InputError
from omniweave.events import spec
from omniweave.identity.service.resolve import resolve
from omniweave.profiles.service.build import build_profiles
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.shells.api.app import create_app

DATA = Path(__file__).parents[1] / "data" / "importers"
EVENT = {"event_id": "EV-7", "event_name": "Wine tasting", "store_id": "S01", "starts_at": "2026-05-07T18:00:00+01:00"}


@pytest.fixture
def app_runtime(tmp_path: Path) -> Iterator[tuple[TestClient, Runtime]]:
    app = create_app(Settings(home=str(tmp_path / "home")))
    yield TestClient(app, follow_redirects=False), app.state.runtime


def rsvps(runtime: Runtime) -> list[dict]:
    events = [orjson.loads(row.payload) for row in runtime.store.read(0)]
    return [e for e in events if e.get("event") == spec.EVENT_RSVP]


def person_of(runtime: Runtime, kind: str, value: str) -> str:
    rows = runtime.warehouse().table("identities").to_pyarrow().to_pylist()
    return next(row["person_id"] for row in rows if row["kind"] == kind and row["value"] == value)


def test_rsvp_get_records_nothing_post_records_once_for_the_recipient(app_runtime) -> None:
    client, runtime = app_runtime
    emit(runtime.store, "crm", [{"type": "identify", "messageId": "id-1", "userId": "C-100"}])
    load_all(runtime.store, runtime.log)
    resolve(runtime, probabilistic=False)
    person = person_of(runtime, "user_id", "C-100")

    link = rsvp_link(runtime, **EVENT, person_id=person, send_key="email:k1", channel="email", campaign="tasting")
    assert link.url.startswith(runtime.settings.channels.public_url + "/r/") and link.user_id == "C-100"
    path = urlsplit(link.url).path

    page = client.get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Wine tasting" in page.text and f"action='{path}'" in page.text and "method='post'" in page.text
    assert rsvps(runtime) == []  # a GET (a link scanner) records nothing

    first = client.post(path)
    assert first.status_code == 200 and "location" not in first.headers and "Thank you" in first.text
    again = client.post(path)
    assert again.status_code == 200
    (event,) = rsvps(runtime)  # a double click records once
    assert event["userId"] == "C-100" and event["type"] == "track"
    assert event["properties"] == {
        **EVENT,
        "rsvp": "yes",
        "channel": "email",
        "campaign": "tasting",
        "send_key": "email:k1",
        "person_id": person,
    }
    assert record_rsvp(runtime, link.token).recorded is False

    # the attendance at the door (store_visits, visit_type=event) carries the same property names
    visits = DATA / "store_visits.csv"
    with_id = runtime.settings.home + "/visits.csv"
    text = visits.read_text().splitlines()
    Path(with_id).write_text(
        "\n".join([text[0] + ",event_id", *(line + (",EV-7" if ",event," in line else ",") for line in text[1:])])
        + "\n"
    )
    import_file(runtime, "store_visits", with_id)
    load_all(runtime.store, runtime.log)
    warehouse = runtime.warehouse()
    warehouse.table("events")
    rows = warehouse.rows(
        "SELECT event, json_extract_string(properties, '$.event_id') AS id, "
        "json_extract_string(properties, '$.event_name') AS name FROM events "
        f"WHERE event IN ('{spec.EVENT_RSVP}', '{spec.EVENT_ATTENDED}') ORDER BY event"
    )
    assert [tuple(r.values()) for r in rows] == [
        (spec.EVENT_ATTENDED, "EV-7", "Wine tasting"),
        (spec.EVENT_RSVP, "EV-7", "Wine tasting"),
    ]


def test_an_rsvp_without_a_known_user_id_uses_the_channel_address(app_runtime) -> None:
    client, runtime = app_runtime
    link = rsvp_link(runtime, **EVENT, send_key="sms:k2", address="+447700900001", channel="sms")
    assert client.post(urlsplit(link.url).path).status_code == 200
    (event,) = rsvps(runtime)
    assert event.get("userId") is None and event["anonymousId"] == "sms:+447700900001"
    assert event["properties"]["send_key"] == "sms:k2" and event["properties"]["channel"] == "sms"


def test_a_forged_or_altered_rsvp_token_gets_404_on_get_and_post(app_runtime) -> None:
    client, runtime = app_runtime
    link = rsvp_link(runtime, **EVENT, person_id="p-1", channel="email")
    middle = len(link.token) // 2  # not the last character: its spare base64 bits may decode the same
    altered = link.token[:middle] + ("A" if link.token[middle] != "A" else "B") + link.token[middle + 1 :]
    other_purpose = links.sign(runtime, "q", {"e": "EV-7", "n": "x", "st": "S01", "at": "2026-05-07", "pid": "p"})
    for token in (altered, other_purpose, "nonsense", "x" * 40):
        for method in (client.get, client.post):
            answer = method(f"/r/{token}")
            assert answer.status_code == 404 and answer.json()["errors"][0]["field"] == "token", (token, answer.text)
    assert rsvps(runtime) == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"event_id": " "}, "event_id"),
        ({"starts_at": "next Thursday"}, "starts_at"),
        ({"channel": "fax"}, "channel"),
        ({"person_id": None}, "person_id"),
    ],
)
def test_rsvp_link_names_the_bad_field(runtime: Runtime, changes: dict, field: str) -> None:
    arguments: dict = {**EVENT, "person_id": "p-1", "channel": "email", **changes}
    with pytest.raises(InputError) as caught:
        rsvp_link(runtime, **arguments)
    assert caught.value.field == field


def test_email_captured_at_the_till_joins_the_card_s_person_with_consent(runtime: Runtime) -> None:
    import_file(runtime, "loyalty", DATA / "loyalty.csv")  # LC-0002 (Bob) signed up with no e-mail
    path = Path(runtime.settings.home) / "capture.csv"
    path.write_text(
        "capture_id,store_id,timestamp,email,loyalty_card,email_opt_in,till_id\n"
        "EC1,S02,2024-05-04T10:00:00Z,bob@example.com,LC-0002,yes,T1\n"
        "EC2,S02,2024-05-04T10:05:00Z,zoe@example.com,,no,T1\n"
    )
    summary = import_file(runtime, "email_capture", path)
    assert (summary.rows_imported, summary.rows_rejected) == (2, 0)
    load_all(runtime.store, runtime.log)
    resolve(runtime, probabilistic=False)
    bob = person_of(runtime, "loyalty_card", "LC0002")  # identity normalises card numbers
    assert person_of(runtime, "email", "bob@example.com") == bob
    build_profiles(runtime, traits=[])
    profiles = {r["person_id"]: r for r in runtime.warehouse().table("profiles").to_pyarrow().to_pylist()}
    assert profiles[bob]["consent_email"] is True
    zoe = person_of(runtime, "email", "zoe@example.com")
    assert zoe != bob and profiles[zoe]["consent_email"] is False
