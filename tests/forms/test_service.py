"""The forms service on a real store and a real SMTP server: a submit, its double opt-in, expiry, abuse."""

from __future__ import annotations

import copy
import time
from typing import Any

import orjson
import sqlalchemy as sa

from omniweave.activate.service import coupons
from omniweave.channels.sms.service import messaging_channel
from omniweave.events.normalize import infer_channel
from omniweave.forms import service as F
from omniweave.forms.abuse import FormLimiter, Limits
from omniweave.runtime import Runtime
from omniweave.storage.ops.tables import consent_history, form_signups, privacy_blocked
from omniweave.storage.ops.tables.privacy import block_digest
from tests.forms.conftest import NEWSLETTER, Mailbox

ANSWERS = {"email": "Ann@Example.com", "first_name": "Ann", "consent": ["email", "personalisation"]}


def _events(runtime: Runtime) -> list[dict[str, Any]]:
    """The events forms wrote (the channels' own feedback, e.g. Email Sent, is left out)."""
    forms = runtime.store.ensure_source(F.SOURCE)
    return [orjson.loads(row.payload) for row in runtime.store.read(after=0) if row.source_id == forms]


def _consents(runtime: Runtime) -> list[Any]:
    with runtime.store.engine.connect() as conn:
        return list(conn.execute(sa.select(consent_history)).all())


def _signups(runtime: Runtime) -> list[Any]:
    with runtime.store.engine.connect() as conn:
        return list(conn.execute(sa.select(form_signups)).all())


def _request(runtime: Runtime, answers: dict[str, Any], **kwargs: Any) -> F.SubmitRequest:
    stamp = F.render_stamp(runtime, "newsletter", now=time.time() - 10)
    return F.SubmitRequest("newsletter", {**answers, "started": stamp}, ip="198.51.100.7", **kwargs)


def test_a_submit_is_events_and_a_pending_signup_and_only_the_click_records_consent(
    forms_runtime: Runtime, mailbox: tuple[Mailbox, int]
) -> None:
    runtime, (box, _) = forms_runtime, mailbox
    result = F.submit(runtime, _request(runtime, ANSWERS, anonymous_id="anon-1", placement="poster"))
    assert result.status == "accepted" and result.pending == ("email",)
    identify, submitted = _events(runtime)
    assert identify["type"] == "identify" and identify["anonymousId"] == "anon-1"
    assert identify["traits"] == {"email": "ann@example.com", "first_name": "Ann"}
    assert submitted["event"] == "Form Submitted"
    assert submitted["properties"]["form"] == "newsletter" and submitted["properties"]["placement"] == "poster"
    assert infer_channel(submitted) == "store"  # what the loader writes as the event's channel
    assert _consents(runtime) == []  # nothing before the click
    [signup] = _signups(runtime)
    assert signup.status == "pending" and signup.email == "ann@example.com"
    assert [p["wording"] for p in orjson.loads(signup.purposes)] == [
        "E-mail me news and offers",
        "Tailor the offers to me",
    ]

    [mail] = box.to("ann@example.com")
    assert "E-mail me news and offers" in mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    token = box.confirm_token("ann@example.com")
    confirmed = F.confirm(runtime, token, ip="203.0.113.9")
    assert confirmed.status == "confirmed" and confirmed.purposes == ("email", "personalisation")
    rows = _consents(runtime)
    assert sorted((r.purpose, r.granted, r.reference) for r in rows) == [
        ("email", True, f"form:{signup.id}"),
        ("personalisation", True, f"form:{signup.id}"),
    ]
    proof = F.evidence(runtime, f"form:{signup.id}")
    assert proof.submitted_ip == "198.51.100.7" and proof.confirmed_ip == "203.0.113.9"
    assert proof.confirmed_via == "email" and proof.placement == "poster"
    assert proof.confirmed_at is not None and proof.confirmed_at >= proof.submitted_at
    assert [p["wording"] for p in proof.purposes] == ["E-mail me news and offers", "Tailor the offers to me"]
    last = _events(runtime)[-1]
    assert last["event"] == "Sign-up Confirmed" and last["anonymousId"] == "anon-1"
    assert last["traits"]["email_opt_in"] is True and last["properties"]["placement"] == "poster"
    assert last["context"]["consent"]["categoryPreferences"] == {"personalisation": True}
    assert F.confirm(runtime, token).status == "already"
    assert len(_consents(runtime)) == 2
    assert F.confirm(runtime, token[:-2] + ("AA" if token[-2:] != "AA" else "BB")).status == "invalid"


def test_the_same_answer_whether_the_address_is_known_or_not(
    forms_runtime: Runtime, mailbox: tuple[Mailbox, int]
) -> None:
    runtime = forms_runtime
    first = F.submit(runtime, _request(runtime, ANSWERS))
    second = F.submit(runtime, _request(runtime, ANSWERS))
    assert first.to_dict() == second.to_dict() == {"status": "accepted", "form": "newsletter", "errors": []}


def test_bad_submissions_store_nothing(forms_runtime: Runtime, mailbox: tuple[Mailbox, int]) -> None:
    runtime, (box, _) = forms_runtime, mailbox
    invalid = F.submit(runtime, _request(runtime, {"email": "nope", "consent": ["email"]}))
    assert invalid.status == "invalid" and [e.field for e in invalid.errors] == ["email"]
    honeypot = F.submit(runtime, _request(runtime, {**ANSWERS, "website": "http://spam.example"}))
    assert honeypot.status == "ignored" and honeypot.looks_accepted
    no_stamp = F.submit(runtime, F.SubmitRequest("newsletter", dict(ANSWERS)))
    assert no_stamp.status == "expired"
    forged = F.submit(runtime, F.SubmitRequest("newsletter", {**ANSWERS, "started": "x" * 40}))
    assert forged.status == "expired"
    assert _events(runtime) == [] and _signups(runtime) == [] and box.messages == []


def test_a_submit_sooner_than_min_seconds_is_too_fast(forms_runtime: Runtime) -> None:
    runtime = forms_runtime
    slow = copy.deepcopy(NEWSLETTER)
    slow["min_seconds"] = 3600
    F.save_form(runtime, slow)
    stamp = F.render_stamp(runtime, "newsletter")
    result = F.submit(runtime, F.SubmitRequest("newsletter", {**ANSWERS, "started": stamp}))
    assert result.status == "too_fast" and _events(runtime) == []


def test_unconfirmed_signups_expire_and_keep_no_personal_data(
    forms_runtime: Runtime, mailbox: tuple[Mailbox, int]
) -> None:
    runtime, (box, _) = forms_runtime, mailbox
    F.submit(runtime, _request(runtime, ANSWERS), now=time.time())
    token = box.confirm_token("ann@example.com")
    later = time.time() + 49 * 3600
    assert F.expire(runtime, now=time.time()) == 0
    assert F.expire(runtime, now=later) == 1
    [row] = _signups(runtime)
    assert (row.status, row.email, row.submitted_ip, row.anonymous_id) == ("expired", None, None, None)
    assert F.confirm(runtime, token).status == "expired"
    assert _consents(runtime) == []


def test_a_late_click_expires_the_signup_on_read(forms_runtime: Runtime, mailbox: tuple[Mailbox, int]) -> None:
    runtime, (box, _) = forms_runtime, mailbox
    F.submit(runtime, _request(runtime, ANSWERS))
    token = box.confirm_token("ann@example.com")
    assert F.confirm(runtime, token, now=time.time() + 49 * 3600).status == "expired"
    assert _signups(runtime)[0].status == "expired" and _consents(runtime) == []


def test_sms_keyword_confirms_and_none_is_confirmed_at_once(forms_runtime: Runtime) -> None:
    runtime = forms_runtime
    form = copy.deepcopy(NEWSLETTER)
    form["purposes"] = [
        {"name": "sms", "wording": "Text me offers", "confirm": "sms"},
        {"name": "analytics", "wording": "Count my visits", "confirm": "none"},
    ]
    F.save_form(runtime, form)
    fake_sms = messaging_channel(runtime, "sms", fake=True)
    answers = {"email": "bo@example.com", "phone": "07911 123456", "consent": ["sms", "analytics"]}
    result = F.submit(runtime, _request(runtime, answers), channels={"sms": fake_sms})
    assert result.status == "accepted" and result.pending == ("sms",)
    assert sorted(r.purpose for r in _consents(runtime)) == ["analytics"]  # single opt-in: at once
    assert F.confirm_by_keyword(runtime, "+447911123456", "maybe").status == "invalid"
    assert F.confirm_by_keyword(runtime, "+447911123456", " Yes ").status == "confirmed"
    assert sorted(r.purpose for r in _consents(runtime)) == ["analytics", "sms"]
    assert F.confirm_by_keyword(runtime, "+447911123456", "YES").status == "invalid"  # nothing pending any more


def test_a_confirmed_signup_gets_the_forms_coupon(forms_runtime: Runtime, mailbox: tuple[Mailbox, int]) -> None:
    runtime, (box, _) = forms_runtime, mailbox
    coupons.create_pool(runtime, "WELCOME", kind="unique", valid_days=30)
    form = copy.deepcopy(NEWSLETTER)
    form["coupon_pool"] = "WELCOME"
    F.save_form(runtime, form)
    F.submit(runtime, _request(runtime, ANSWERS))
    result = F.confirm(runtime, box.confirm_token("ann@example.com"))
    assert result.coupon and coupons.find(runtime, result.coupon) is not None
    assert F.evidence(runtime, f"form:{result.signup_id}").coupon == result.coupon


def test_the_limiter_refuses_a_flood_from_one_ip_and_on_one_form() -> None:
    clock = [1000.0]
    limiter = FormLimiter(
        Limits(per_ip_per_minute=5, per_ip_burst=5, per_form_per_minute=60, per_form_burst=8), lambda: clock[0]
    )
    answers = [limiter.check("10.0.0.1", "f") for _ in range(6)]
    assert answers[:5] == [0] * 5 and answers[5] > 0
    others = [limiter.check(f"10.0.1.{i}", "f") for i in range(4)]
    assert others[:3] == [0, 0, 0] and others[3] > 0  # the form's burst of 8 is spent
    clock[0] += 60
    assert limiter.check("10.0.0.1", "f") == 0


def test_sign_up_without_a_browser_for_the_demo(forms_runtime: Runtime) -> None:
    runtime = forms_runtime
    past = time.time() - 30 * 86400
    answers = {"email": "gil@example.com", "first_name": "Gil", "consent": ["email"]}
    result, confirmed = F.sign_up(
        runtime, "newsletter", answers, placement="receipt", channels=F.fake_channels(runtime), now=past
    )
    assert result.status == "accepted" and [c.status for c in confirmed] == ["confirmed"]
    [row] = _consents(runtime)
    assert (row.purpose, row.stated_at) == ("email", past)
    stamps = {e["event"] if e["type"] == "track" else "identify": e["timestamp"] for e in _events(runtime)}
    expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(past))
    assert {k: v[:19] for k, v in stamps.items()} == {
        "identify": expected,
        "Form Submitted": expected,
        "Sign-up Confirmed": expected,
    }


def test_a_birthday_is_checked_against_the_day_of_the_submit(forms_runtime: Runtime) -> None:
    runtime = forms_runtime
    then = time.mktime((2020, 6, 1, 12, 0, 0, 0, 0, -1))
    answers = {"email": "ida@example.com", "birthday": "2021-01-01", "consent": ["email"]}
    result, _ = F.sign_up(runtime, "newsletter", answers, channels=F.fake_channels(runtime), now=then)
    assert [(e.field, e.code) for e in result.errors] == [("birthday", "birthday")]  # born after the sign-up
    assert _events(runtime) == []


def test_the_shipped_newsletter_form_serves_a_project_without_forms(runtime: Runtime) -> None:
    form = F.load_form(runtime.settings, "newsletter")
    assert form.source.startswith("omniweave (library)") and [p.name for p in form.purposes] == ["email"]
    assert [f.name for f in F.list_forms(runtime)] == ["newsletter"]
    assert F.check_files(runtime) == []  # nothing of the project's to check
    # its one purpose is the newsletter: a submit without the box ticked is told so, and nothing is kept
    result, _ = F.sign_up(runtime, "newsletter", {"email": "hal@example.com"}, channels=F.fake_channels(runtime))
    assert result.status == "invalid" and [(e.field, e.code) for e in result.errors] == [
        ("consent_email", "consent_required")
    ]
    assert _events(runtime) == [] and _signups(runtime) == []


def test_a_person_who_asked_not_to_be_tracked_is_answered_like_anyone_and_nothing_is_kept(
    forms_runtime: Runtime, mailbox: tuple[Mailbox, int]
) -> None:
    runtime, (box, _) = forms_runtime, mailbox
    digest = block_digest("email", "ann@example.com")
    with runtime.store.engine.begin() as conn:
        conn.execute(sa.insert(privacy_blocked).values(digest=digest, request_id="r1", created_at=time.time()))
    result = F.submit(runtime, _request(runtime, ANSWERS))
    assert result.status == "ignored" and result.looks_accepted  # the page says thank you, as to anyone
    assert _events(runtime) == [] and _signups(runtime) == [] and box.messages == []


def test_the_confirmation_mail_lists_only_the_purposes_ticked(
    forms_runtime: Runtime, mailbox: tuple[Mailbox, int]
) -> None:
    runtime, (box, _) = forms_runtime, mailbox
    F.submit(runtime, _request(runtime, {**ANSWERS, "consent": ["email"]}))
    [mail] = box.to("ann@example.com")
    for part in ("plain", "html"):
        body = mail.get_body(preferencelist=(part,))
        assert body is not None
        text = body.get_content()
        assert "E-mail me news and offers" in text and "Tailor the offers to me" not in text, part
    [signup] = _signups(runtime)
    assert [p["name"] for p in orjson.loads(signup.purposes)] == ["email"]
