"""The Customers page on the demo world: a customer with online and store activity found by e-mail and by loyalty
card, their timeline with both kinds of touches, the profile's figures against `omniweave profile show` and the
API's `GET /v1/profiles/{id}`, the analyst's masked view, a message not sent with its reason, and bad input.

The shared demo world (600 customers, 60 days, `run_demo` without its journey stretch) has no journey run, policy
verdict or issued coupon in its opstore; the not-sent test makes them in a copy of the home: the built-in
`store_event_invitation` journey is published, the customer (who opted out of e-mail) is entered and the engine
steps once, so the invitation is skipped (or held out) with its reason; and one coupon is issued to them.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.datastructures import QueryParams

from omniweave.activate.service import coupons
from omniweave.activate.service.journey_stats import explain, journey_files, load_journey_file
from omniweave.activate.service.journeys import JourneyEngine, publish
from omniweave.collect.emit import emit
from omniweave.collect.loader import load_all
from omniweave.identity.service.resolve import resolve
from omniweave.privacy import sessions
from omniweave.privacy.masking import mask_name
from omniweave.privacy.roles import user_principal
from omniweave.privacy.service import access
from omniweave.profiles.service.lookup import find_people, person_view
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.shells.web.app import PAGES, Context
from omniweave.shells.web.pages.customers import NOT_SENT, OFFLINE, TIMELINE_DEFAULT
from tests.conftest import omniweave_cmd
from tests.shells.web.conftest import PASSWORD, TIMEOUT, Dashboard, email_of, serve_home

NOT_SENT_STEPS = ("skipped", "held_out", "rescheduled", "error")


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _person_id(html: str) -> str:
    start = html.index('<span id="person-id">') + len('<span id="person-id">')
    return html[start : html.index("</span>", start)]


@pytest.fixture(scope="module")
def customer(dashboard: Dashboard) -> dict[str, Any]:
    """A customer with orders online and in store, an e-mail, a loyalty card and no e-mail consent, whose
    timeline as the page shows it by default (the newest events) holds store and online touches."""
    runtime = Runtime(Settings(home=str(dashboard.home)))
    try:
        rows = (
            runtime.warehouse()
            .sql(
                "SELECT p.person_id, e.value AS email, c.value AS card FROM profiles p "
                "JOIN identities e ON e.person_id = p.person_id AND e.kind = 'email' "
                "JOIN identities c ON c.person_id = p.person_id AND c.kind = 'loyalty_card' "
                "WHERE p.store_orders > 0 AND p.online_orders > 0 AND p.consent_email = false "
                "ORDER BY p.person_id"
            )
            .to_pylist()
        )
        for row in rows:
            view = person_view(runtime, row["person_id"], limit=TIMELINE_DEFAULT)
            channels = {e["channel"] for e in view.timeline}
            if "store" in channels and channels - OFFLINE - {"omniweave"}:
                plain = [i["value"] for i in view.identifiers if i["kind"] in ("email", "phone")]
                profile = view.profile or {}
                for column in ("emails", "phones"):
                    plain += [str(v).strip() for v in profile.get(column) or []]
                plain += [str(profile[c]).strip() for c in ("primary_email", "primary_phone") if profile.get(c)]
                names = [str(profile[c]) for c in ("first_name", "last_name") if profile.get(c)]
                return {**row, "plain": sorted(set(plain)), "names": names}
    finally:
        runtime.close()
    raise AssertionError("the demo world has a customer with online and store touches, e-mail and loyalty card")


def test_a_customer_is_found_by_email_and_by_loyalty_card_with_online_and_store_touches(
    dashboard: Dashboard, customer: dict[str, Any]
) -> None:
    client = dashboard.client("marketer")
    by_email = client.get("/app/customers", params={"q": f" {customer['email'].upper()} "})  # as typed
    assert by_email.status_code == 200, by_email.text
    assert _person_id(by_email.text) == customer["person_id"]
    assert f"Found by email:{customer['email']}." in by_email.text
    by_card = client.get("/app/customers", params={"q": customer["card"]})
    assert by_card.status_code == 200, by_card.text
    assert _person_id(by_card.text) == customer["person_id"]
    assert f"Found by loyalty_card:{customer['card']}." in by_card.text
    # one timeline, newest first, with a symbol per channel: the till and an online channel both in it
    assert '<tr data-channel="store">' in by_card.text
    online = ("web", "app", "email", "sms", "whatsapp", "push", "social", "search", "display")
    assert any(f'<tr data-channel="{c}">' in by_card.text for c in online)
    assert '<span class="ch-icon" aria-hidden="true">⌂</span>store' in by_card.text
    timeline = _csv(client.get("/app/customers", params={"person": customer["person_id"], "csv": "timeline"}).text)
    assert {"store"} <= {r["channel"] for r in timeline} and {r["where"] for r in timeline} >= {"online"}
    assert [r["when"] for r in timeline] == sorted((r["when"] for r in timeline), reverse=True)
    # the merge explanation comes after the page (htmx), from `identity explain`
    assert 'hx-get="/app/customers/identity?person=' in by_card.text
    merge = client.get("/app/customers/identity", params={"person": customer["person_id"]})
    assert merge.status_code == 200 and 'id="table-merge_links"' in merge.text
    assert f"is person <strong>{customer['person_id']}</strong>" in merge.text


def test_the_profile_is_that_of_profile_show_and_of_the_api(dashboard: Dashboard, customer: dict[str, Any]) -> None:
    person = customer["person_id"]
    shown = subprocess.run(
        omniweave_cmd("--home", str(dashboard.home), "profile", "show", person, "--format", "csv"),
        check=True,
        capture_output=True,
        text=True,
    )
    cli = {r["trait"]: r["value"] for r in _csv(shown.stdout) if r["value"] != "null"}
    client = dashboard.client("marketer")
    page = {r["trait"]: r["value"] for r in _csv(client.get(f"/app/customers?person={person}&csv=profile").text)}
    assert page == cli
    api = client.get(f"/v1/profiles/{person}")
    assert api.status_code == 200, api.text
    body = api.json()
    value = {r["figure"]: r["value"] for r in _csv(client.get(f"/app/customers?person={person}&csv=value").text)}
    profile = body["profile"]
    for figure in ("clv_12m", "expected_orders_12m", "p_alive"):
        if profile[figure] is None:
            assert value[figure] == ""
        else:
            assert float(value[figure]) == pytest.approx(profile[figure], rel=1e-12)
    if profile["p_alive"] is None:  # the demo's 60 days do not identify the dropout: the note says so
        assert value["churn_risk"] == "" and value["p_alive_note"] == profile["p_alive_note"]
    else:
        assert float(value["churn_risk"]) == pytest.approx(1 - profile["p_alive"])
    identifiers = _csv(client.get(f"/app/customers?person={person}&csv=identifiers").text)
    assert sorted((i["kind"], i["value"]) for i in identifiers) == sorted(
        (i["kind"], i["value"]) for i in body["identifiers"]
    )


def test_the_analyst_sees_no_plain_email_phone_or_name(dashboard: Dashboard, customer: dict[str, Any]) -> None:
    client = dashboard.client("analyst")
    page = client.get("/app/customers", params={"q": customer["email"]})
    assert page.status_code == 200, page.text
    assert _person_id(page.text) == customer["person_id"]
    person = customer["person_id"]
    fragment = client.get("/app/customers/identity", params={"person": person}).text
    profile_csv = client.get(f"/app/customers?person={person}&csv=profile").text
    identifiers = _csv(client.get(f"/app/customers?person={person}&csv=identifiers").text)
    assert customer["plain"], "the customer has an e-mail address"
    for text in (page.text, fragment, profile_csv):
        lowered = text.lower()
        for plain in customer["plain"]:
            assert plain.lower() not in lowered
        for name in customer["names"]:
            assert f">{name}<" not in text and f",{name}\n" not in text
    for name in customer["names"]:
        assert f"<dd>{mask_name(name)}</dd>" in page.text
    # the same masking as the API's answer to an analyst
    api = client.get(f"/v1/profiles/{person}").json()
    assert sorted((i["kind"], i["value"]) for i in identifiers) == sorted(
        (i["kind"], i["value"]) for i in api["identifiers"]
    )
    assert 'value=""' in page.text.split('id="q"', 1)[1][:80]  # the search box does not echo the address
    nobody = client.get("/app/customers", params={"q": "phone:+447700900999"})
    assert 'id="no-match"' in nobody.text and "+447700900999" not in nobody.text and "+44********99" in nobody.text


@pytest.fixture
def journeyed_home(dashboard: Dashboard, customer: dict[str, Any], tmp_path: Path) -> Iterator[Path]:
    """A copy of the dashboard's home in which the customer was entered into `store_event_invitation` (they opted
    out of e-mail: the invitation is not sent) and was issued one coupon."""
    home = tmp_path / "home"
    shutil.copytree(dashboard.home, home)
    runtime = Runtime(Settings(home=str(home)))
    try:
        invitation = load_journey_file(journey_files(runtime.settings)["store_event_invitation"], runtime.settings)
        publish(runtime, invitation, note="test")
        engine = JourneyEngine(runtime, sink=str(tmp_path / "sends.jsonl"))
        assert engine.enter("store_event_invitation", customer["person_id"], key="customers-test")
        while engine.step(100):
            pass
        coupons.create_pool(runtime, "thanks", length=8, campaign="Thank you")
        coupons.issue(runtime, "thanks", person_id=customer["person_id"], send_key="k-test", channel="sms")
    finally:
        runtime.close()
    yield home


def _signed_in(base_url: str, home: Path, role: str) -> httpx.Client:
    """A client with a session of `role`'s user, started through the service: signing in through the form
    would also start the warm-up of every page on this copy (shells/web/app.py `warm`), which this test
    does not need."""
    runtime = Runtime(Settings(home=str(home)))
    try:
        started = access.login(runtime, email_of(role), PASSWORD)
    finally:
        runtime.close()
    return httpx.Client(base_url=base_url, timeout=TIMEOUT, cookies={sessions.COOKIE_NAME: started.token})


def test_a_message_not_sent_shows_with_its_reason(journeyed_home: Path, customer: dict[str, Any]) -> None:
    person = customer["person_id"]
    runtime = Runtime(Settings(home=str(journeyed_home)))
    try:
        runs = explain(runtime, person).runs
        issued = coupons.coupons_of(runtime, [person])
    finally:
        runtime.close()
    expected = {(NOT_SENT[s["outcome"]], s["reason"]) for r in runs for s in r.steps if s["outcome"] in NOT_SENT_STEPS}
    assert expected, "the journey did not send the invitation to someone who opted out of e-mail"
    for url in serve_home(journeyed_home):
        client = _signed_in(url, journeyed_home, "marketer")
        timeline = _csv(client.get(f"/app/customers?person={person}&csv=timeline").text)
        shown = {(r["outcome"], r["reason"]) for r in timeline if r["outcome"].startswith("not sent")}
        assert shown == expected
        assert all(r["source"] == "journeys" for r in timeline if r["outcome"].startswith("not sent"))
        page = client.get(f"/app/customers?person={person}")
        assert page.status_code == 200, page.text
        assert 'class="not-sent"' in page.text
        for outcome, reason in expected:
            assert f'<td class="outcome">{outcome}</td><td class="reason">{_escaped(reason)}</td>' in page.text
        assert f'<tr data-code="{issued[0].display}">' in page.text
        rows = _csv(client.get(f"/app/customers?person={person}&csv=coupons").text)
        assert [(r["code"], r["pool"], r["channel"], r["issued_to"]) for r in rows] == [
            (issued[0].display, "thanks", "sms", person)
        ]


def _escaped(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;").replace('"', "&#34;")
    )


def test_unknown_identifiers_and_bad_parameters(dashboard: Dashboard) -> None:
    client = dashboard.client("marketer")
    unknown = client.get("/app/customers", params={"q": "nobody-at-all@example.com"})
    assert unknown.status_code == 200 and 'id="no-match"' in unknown.text
    assert "Nobody has the identifier" in unknown.text
    gone = client.get("/app/customers", params={"person": "P0000000000000000"})
    assert gone.status_code == 200 and "Nobody has the person id" in gone.text
    for params, field in (
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"person": "P1 OR 1=1"}, "person"),
        ({"q": "email:not-an-address"}, "q"),
        ({"q": "x" * 400}, "q"),
        ({"person": "P0000000000000000", "explain": "yes"}, "explain"),
    ):
        bad = client.get("/app/customers", params=params)
        assert bad.status_code == 400, (params, bad.text[-500:])
        assert f"<code>{field}</code>" in bad.text, params
    assert client.get("/app/customers/identity", params={"person": "not a person"}).status_code == 400
    assert dashboard.client(None).get("/app/customers/identity", params={"person": "P1"}).status_code == 401
    signed_out = dashboard.client(None).get("/app/customers?q=x")
    assert signed_out.status_code == 303 and signed_out.headers["location"].startswith("/app/login")
    empty = client.get("/app/customers")
    assert empty.status_code == 200 and "<label>Any identifier" in empty.text


def test_a_value_several_persons_have_lists_them(runtime: Runtime) -> None:
    """One person's user id is another's loyalty card (no such value in the demo world: a small world of its
    own, and the page's builder called directly): the search lists both, the analyst's list masked."""
    events = [
        {"type": "identify", "messageId": "a", "userId": "7001234", "traits": {"email": "ann@example.com"}},
        {"type": "identify", "messageId": "b", "userId": "C-2", "traits": {"loyalty_card": "7001234"}},
    ]
    emit(runtime.store, "crm", [{**e, "timestamp": "2026-05-01T09:00:00Z"} for e in events])
    load_all(runtime.store, runtime.log)
    resolve(runtime, probabilistic=False)
    expected = find_people(runtime, "7001234")
    assert len(expected) == 2
    for role in ("marketer", "analyst"):
        principal = user_principal("u", email_of(role), role)
        built = PAGES["customers"].builder(Context(runtime, principal, QueryParams("q=7001234")))
        assert built.context["state"] == "several"
        rows = built.tables["matches"].rows
        assert [r[0] for r in rows] == [p for p, _ in expected]
        if role == "marketer":
            assert [r[1] for r in rows] == ["user_id:7001234", "loyalty_card:7001234"]
        else:
            assert [r[1] for r in rows] == ["user_id:7****34", "loyalty_card:7****34"]
