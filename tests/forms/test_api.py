"""The hosted form, the snippet's answers, confirmation pages and /v1/forms, through the real app."""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from omniweave.activate.service import coupons
from omniweave.forms.abuse import FormLimiter, Limits
from omniweave.privacy import roles
from omniweave.privacy.service import access
from omniweave.runtime import Runtime
from omniweave.shells.api.app import create_app
from omniweave.storage.ops.tables import audit_log, consent_history, form_signups
from tests.forms.conftest import NEWSLETTER, Mailbox

GOOD = {"email": "cy@example.com", "first_name": "Cy", "consent": "email"}


@pytest.fixture
def client(forms_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(forms_runtime.settings), follow_redirects=False) as c:
        yield c


def _hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, name
    return found.group(1)


def _count(runtime: Runtime, table: sa.Table) -> int:
    with runtime.store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def _post(client: TestClient, answers: dict[str, Any], query: str = "", **headers: str) -> Any:
    page = client.get(f"/f/newsletter{query}").text
    body = {**answers, "started": _hidden(page, "started")}
    return client.post(f"/f/newsletter{query}", data=body, headers=headers)


def test_the_hosted_page_is_accessible_and_works_without_javascript(
    client: TestClient, forms_runtime: Runtime, mailbox: tuple[Mailbox, int]
) -> None:
    page = client.get("/f/newsletter", headers={"Accept-Language": "de-DE,de;q=0.9"})
    assert page.status_code == 200 and "<script" not in page.text
    assert 'lang="de"' in page.text and "E-Mail-Adresse" in page.text and "Schickt mir Neuigkeiten" in page.text
    assert '<label for="newsletter-email">' in page.text and 'aria-hidden="true"' in page.text  # honeypot hidden
    assert "frame-ancestors 'self'" in page.headers["content-security-policy"]
    answer = _post(client, GOOD, "?placement=shelf")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/f/newsletter/thanks")
    thanks = client.get(answer.headers["location"])
    assert "Thanks! Please check your inbox" in thanks.text
    box = mailbox[0]
    link = box.confirm_link("cy@example.com")
    path = link.replace("http://testserver", "")
    ask = client.get(path)
    assert ask.status_code == 200 and 'method="post"' in ask.text
    assert _count(forms_runtime, consent_history) == 0  # opening the link changed nothing
    done = client.post(path)
    assert done.status_code == 200 and 'data-ow-confirm="confirmed"' in done.text
    assert _count(forms_runtime, consent_history) == 1
    assert 'data-ow-confirm="already"' in client.post(path).text
    token = path.split("?", 1)[0]
    assert client.post(token[:-3] + ("xyz" if not token.endswith("xyz") else "abc")).status_code == 404


def test_bad_fields_come_back_with_their_messages_announced_and_nothing_stored(
    client: TestClient, forms_runtime: Runtime, mailbox: tuple[Mailbox, int]
) -> None:
    answer = _post(client, {"email": "cy@", "birthday": "31.02.1990", "consent": "email", "first_name": "Cy"})
    assert answer.status_code == 400
    page = answer.text
    assert 'role="alert"' in page and "Please check 2 answer(s)" in page
    assert 'aria-invalid="true"' in page and 'aria-describedby="newsletter-email-error"' in page
    assert 'id="newsletter-email-error"' in page and "name@example.com" in page
    assert 'aria-describedby="newsletter-birthday-help newsletter-birthday-error"' in page
    assert 'value="Cy"' in page  # the good answers are kept
    assert _count(forms_runtime, form_signups) == 0 and mailbox[0].messages == []


def test_the_honeypot_is_thanked_and_ignored(
    client: TestClient, forms_runtime: Runtime, mailbox: tuple[Mailbox, int]
) -> None:
    answer = _post(client, {**GOOD, "website": "http://spam.example"})
    assert answer.status_code == 303 and "/thanks" in answer.headers["location"]
    assert _count(forms_runtime, form_signups) == 0 and mailbox[0].messages == []


def test_a_too_fast_submit_is_asked_to_send_again(client: TestClient, forms_runtime: Runtime) -> None:
    slow = copy.deepcopy(NEWSLETTER)
    slow["min_seconds"] = 3600
    assert client.put("/v1/forms/newsletter", json=slow, headers=_admin(forms_runtime)).status_code == 200
    answer = _post(client, GOOD)
    assert answer.status_code == 400 and "That was quick!" in answer.text
    assert _count(forms_runtime, form_signups) == 0


def test_a_flood_from_one_ip_gets_429_and_nothing_more_is_stored(client: TestClient, forms_runtime: Runtime) -> None:
    answers = [_post(client, {**GOOD, "email": f"p{i}@example.com"}) for i in range(6)]
    assert [a.status_code for a in answers] == [303] * 5 + [429]
    assert int(answers[-1].headers["retry-after"]) >= 1
    assert 'role="alert"' in answers[-1].text and "Too many sign-ups from here" in answers[-1].text
    assert _count(forms_runtime, form_signups) == 5


def test_json_answers_for_api_clients(client: TestClient, forms_runtime: Runtime) -> None:
    page = client.get("/f/newsletter").text
    started = _hidden(page, "started")
    bad = client.post("/f/newsletter", json={"email": "x", "started": started}, headers={"Accept": "application/json"})
    assert bad.status_code == 400
    assert bad.json()["errors"] == [
        {"field": "email", "code": "email", "message": "Please enter an e-mail address like name@example.com."}
    ]
    good = client.post("/f/newsletter", json={**GOOD, "consent": ["email"], "started": started})
    assert good.status_code == 200 and good.json() == {
        "status": "accepted",
        "message": "Thanks! Please check your inbox to confirm.",
    }


def test_cors_only_for_allowed_origins(client: TestClient, forms_runtime: Runtime) -> None:
    form = copy.deepcopy(NEWSLETTER)
    form["allowed_origins"] = ["http://shop.example"]
    client.put("/v1/forms/newsletter", json=form, headers=_admin(forms_runtime))
    fragment = client.get("/f/newsletter?fragment=1&placement=embed", headers={"Origin": "http://shop.example"})
    assert fragment.headers["access-control-allow-origin"] == "http://shop.example"
    assert "<html" not in fragment.text and 'data-ow-form="newsletter"' in fragment.text
    other = client.get("/f/newsletter?fragment=1", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    refused = _post(client, GOOD, "?fragment=1", Origin="http://evil.example")
    assert refused.status_code == 403 and _count(forms_runtime, form_signups) == 0
    taken = _post(client, GOOD, "?fragment=1&placement=embed", Origin="http://shop.example")
    assert taken.status_code == 200 and 'data-ow-thanks="newsletter"' in taken.text


def test_kiosk_mode_forgets_the_visitor_and_comes_back(client: TestClient, forms_runtime: Runtime) -> None:
    client.cookies.set("ajs_anonymous_id", "%22visitor-1%22")
    assert _hidden(client.get("/f/newsletter").text, "anonymous_id") == "visitor-1"
    page = client.get("/f/newsletter?kiosk=1").text
    assert _hidden(page, "anonymous_id") == "" and 'autocomplete="off"' in page
    answer = _post(client, GOOD, "?kiosk=1")
    assert answer.status_code == 303
    thanks = client.get(answer.headers["location"]).text
    assert 'http-equiv="refresh"' in thanks and "kiosk=1" in thanks
    with forms_runtime.store.engine.connect() as conn:
        row = conn.execute(sa.select(form_signups)).one()
    assert row.placement == "kiosk" and row.anonymous_id != "visitor-1"


def _admin(runtime: Runtime) -> dict[str, str]:
    key = access.create_api_key(runtime, "ops", list(roles.KEY_SCOPES), actor="cli:test")
    return {"Authorization": f"Bearer {key.key}"}


def test_v1_forms_crud_reports_every_problem(client: TestClient, forms_runtime: Runtime) -> None:
    admin = _admin(forms_runtime)
    reader = access.create_api_key(forms_runtime, "reader", [roles.PROFILES_READ], actor="cli:test")
    bad = copy.deepcopy(NEWSLETTER)
    bad["name"] = "shop_signup"
    bad["fields"][0]["type"] = "mail"
    bad["purposes"][0]["confirm"] = "pigeon"
    answer = client.put("/v1/forms/shop_signup", json=bad, headers=admin)
    assert answer.status_code == 400
    fields = {p["field"] for p in answer.json()["errors"]}
    assert {"fields[0].type", "purposes[0].confirm"} <= fields
    check = client.post("/v1/forms/validate", json=bad, headers=admin).json()
    assert check["valid"] is False and len(check["problems"]) == len(answer.json()["errors"])
    good = copy.deepcopy(NEWSLETTER)
    good["name"] = "shop_signup"
    assert client.put("/v1/forms/shop_signup", json=good, headers=admin).status_code == 200
    listed = client.get("/v1/forms", headers={"Authorization": f"Bearer {reader.key}"}).json()
    assert sorted(f["name"] for f in listed) == ["newsletter", "shop_signup"]
    refused = client.put("/v1/forms/shop_signup", json=good, headers={"Authorization": f"Bearer {reader.key}"})
    assert refused.status_code == 403
    assert client.delete("/v1/forms/shop_signup", headers=admin).status_code == 200
    assert client.get("/f/shop_signup").status_code == 404
    with forms_runtime.store.engine.connect() as conn:
        logged = conn.execute(
            sa.select(audit_log.c.action, audit_log.c.target, audit_log.c.detail).where(
                audit_log.c.target == "form:shop_signup"
            )
        ).all()
    assert [(a, t, json.loads(d)) for a, t, d in logged] == [
        ("config.change", "form:shop_signup", {"op": "save"}),
        ("config.change", "form:shop_signup", {"op": "delete"}),
    ]


def test_the_confirmation_page_speaks_the_language_of_the_signup(
    client: TestClient, forms_runtime: Runtime, mailbox: tuple[Mailbox, int]
) -> None:
    answer = _post(client, {**GOOD, "email": "dora@example.com"}, "?lang=de")
    assert answer.status_code == 303
    [mail] = mailbox[0].to("dora@example.com")
    assert mail["Subject"].startswith("Bitte bestätigen")
    path = mailbox[0].confirm_link("dora@example.com").replace("http://testserver", "")
    ask = client.get(path)  # a browser set to English: the link still says which language the sign-up was in
    assert ask.status_code == 200 and 'lang="de"' in ask.text and "Anmeldung bestätigen" in ask.text
    done = client.post(path)
    assert done.status_code == 200 and 'lang="de"' in done.text and "Bestätigt" in done.text


def test_a_flood_on_one_form_gets_429_while_another_form_still_takes_sign_ups(
    client: TestClient, forms_runtime: Runtime
) -> None:
    other = copy.deepcopy(NEWSLETTER)
    other["name"] = "club"
    assert client.put("/v1/forms/club", json=other, headers=_admin(forms_runtime)).status_code == 200
    generous_per_ip = Limits(per_ip_per_minute=600, per_ip_burst=100, per_form_per_minute=0.1, per_form_burst=2)
    client.app.state.form_limiter = FormLimiter(generous_per_ip, time.monotonic)  # type: ignore[attr-defined]
    answers = [_post(client, {**GOOD, "email": f"f{i}@example.com"}) for i in range(3)]
    assert [a.status_code for a in answers] == [303, 303, 429]
    page = client.get("/f/club").text
    body = {**GOOD, "email": "g@example.com", "started": _hidden(page, "started")}
    assert client.post("/f/club", data=body).status_code == 303
    assert _count(forms_runtime, form_signups) == 3


def test_a_known_address_gets_the_same_answer_as_a_new_one(
    client: TestClient, forms_runtime: Runtime, mailbox: tuple[Mailbox, int]
) -> None:
    def answer() -> tuple[int, Any]:
        page = client.get("/f/newsletter").text
        body = {**GOOD, "consent": ["email"], "started": _hidden(page, "started")}
        got = client.post("/f/newsletter", json=body, headers={"Accept": "application/json"})
        return got.status_code, got.json()

    new = answer()
    assert client.post(mailbox[0].confirm_link("cy@example.com").replace("http://testserver", "")).status_code == 200
    assert answer() == answer() == new  # pending, then confirmed before: nothing tells them apart


def test_the_coupon_shows_on_the_confirmation_and_a_forms_own_brand_file_is_worn(
    client: TestClient, forms_runtime: Runtime, mailbox: tuple[Mailbox, int]
) -> None:
    coupons.create_pool(forms_runtime, "WELCOME", kind="unique", valid_days=30)
    home = Path(forms_runtime.settings.home)
    (home / "autumn.yaml").write_text('name: "Autumn at the shop"\ncolours: {primary: "#A0522D"}\n', encoding="utf-8")
    form = copy.deepcopy(NEWSLETTER)
    form.update(coupon_pool="WELCOME", brand="autumn.yaml")
    assert client.put("/v1/forms/newsletter", json=form, headers=_admin(forms_runtime)).status_code == 200
    page = client.get("/f/newsletter").text
    assert "--ow-primary: #A0522D" in page and "Autumn at the shop" in page
    assert _post(client, GOOD).status_code == 303
    [mail] = mailbox[0].to("cy@example.com")
    assert "Autumn at the shop" in mail["Subject"]
    done = client.post(mailbox[0].confirm_link("cy@example.com").replace("http://testserver", ""))
    code = re.search(r'<strong class="ow-coupon">([^<]+)</strong>', done.text)
    assert done.status_code == 200 and code and coupons.find(forms_runtime, code.group(1)) is not None
