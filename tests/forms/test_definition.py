"""Form definitions: every problem reported at once with its path, and a checked form round-trips."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import pytest

from omniweave.forms.definition import FormInvalid, parse_form
from omniweave.forms.submission import check_email, check_phone, check_submission
from omniweave.forms.wording import pick_locale, wording
from tests.forms.conftest import NEWSLETTER

PURPOSES = ("analytics", "personalisation", "advertising", "email", "sms", "whatsapp", "push")


def test_the_newsletter_parses_and_round_trips() -> None:
    form = parse_form(NEWSLETTER, purposes=PURPOSES)
    assert [f.name for f in form.fields] == [f["name"] for f in NEWSLETTER["fields"]]
    assert form.text(form.purposes[0].wording, "de") == "Schickt mir Neuigkeiten per E-Mail"
    assert parse_form(form.to_json(), purposes=PURPOSES) == form


def test_every_problem_is_reported_at_once_with_its_path() -> None:
    bad: dict[str, Any] = copy.deepcopy(NEWSLETTER)
    bad["name"] = "Bad Name"
    bad["locales"] = ["en", "de", "fr"]
    bad["fields"][0]["type"] = "mail"
    bad["fields"][5].pop("options")
    bad["fields"][7]["pattern"] = "(["
    bad["purposes"][0]["confirm"] = "pigeon"
    bad["purposes"][1]["name"] = "telepathy"
    bad["purposes"].append({"name": "sms", "wording": "Text me", "confirm": "sms"})
    bad["thank_you"] = {"en": "Thanks"}
    bad["colour"] = "red"
    with pytest.raises(FormInvalid) as caught:
        parse_form(bad, "bad.yaml", purposes=PURPOSES)
    paths = {path for path, _ in caught.value.problems}
    assert {
        "name",
        "locales[2]",
        "fields[0].type",
        "fields[5].options",
        "fields[7].pattern",
        "purposes[0].confirm",
        "purposes[1].name",
        "thank_you.de",
        "colour",
    } <= paths, caught.value.problems
    message = str(caught.value)
    assert "bad.yaml" in message and "'telepathy'" in message and "pigeon" in message


def test_cross_checks_name_what_a_confirmation_needs() -> None:
    bad: dict[str, Any] = copy.deepcopy(NEWSLETTER)
    bad["purposes"].append({"name": "sms", "wording": "Text me", "confirm": "sms"})
    bad["fields"] = [f for f in bad["fields"] if f["type"] != "phone"]
    bad["fields"].append({"name": "postcode", "type": "postcode"})
    with pytest.raises(FormInvalid) as caught:
        parse_form(bad, purposes=PURPOSES)
    problems = dict(caught.value.problems)
    assert "phone field" in problems["purposes[2].confirm"]
    assert "defined twice" in problems["fields"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Ann@Example.COM", "ann@example.com"),
        ("a.b+tag@sub.example.co.uk", "a.b+tag@sub.example.co.uk"),
        ("jörg@bücher.de", "jörg@bücher.de"),
        ("no-at-sign.example.com", None),
        ("two@@example.com", None),
        ("dot.@example.com", None),
        ("ann@localhost", None),
        ("ann@example.123", None),
        ("ann@-bad-.com", None),
        ("a" * 65 + "@example.com", None),
    ],
)
def test_email_syntax_is_checked_offline(text: str, expected: str | None) -> None:
    assert check_email(text) == expected


def test_phone_numbers_become_e164_in_the_region() -> None:
    assert check_phone("07911 123456", "GB") == "+447911123456"
    assert check_phone("+49 151 23456789", "GB") == "+4915123456789"
    assert check_phone("12345", "GB") is None
    assert check_phone("not a number", "GB") is None


def test_a_submission_gets_one_error_per_bad_field_and_clean_traits_otherwise() -> None:
    form = parse_form(NEWSLETTER, purposes=PURPOSES)
    answers = {
        "email": "not-an-address",
        "phone": "123",
        "birthday": "1990-02-30",
        "postcode": "!!",
        "preferred_store": "S99",
        "interests": ["food", "cars"],
        "shoe_size": "huge",
        "first_name": "<script>",
    }
    checked = check_submission(form, answers, region="GB", today=date(2026, 1, 1))
    assert {e.field: e.code for e in checked.errors} == {
        "email": "email",
        "phone": "phone",
        "birthday": "birthday",
        "postcode": "postcode",
        "preferred_store": "choice",
        "interests": "choice",
        "shoe_size": "pattern",
        "first_name": "name",
    }
    good = {
        "email": " Ann@Example.com ",
        "phone": "07911 123456",
        "birthday": "1990-05-17",
        "postcode": "n1 1aa",
        "preferred_store": "S02",
        "interests": ["kids", "food"],
        "shoe_size": "42",
        "consent": ["email"],
    }
    checked = check_submission(form, good, region="GB", today=date(2026, 1, 1))
    assert checked.ok
    assert checked.traits == {
        "email": "ann@example.com",
        "phone": "+447911123456",
        "birthday": "1990-05-17",
        "postcode": "N1 1AA",
        "preferred_store": "S02",
        "interests": ["food", "kids"],
        "shoe_size": "42",
    }
    assert checked.purposes == ("email",)
    missing = check_submission(form, {"consent": ["email"]}, region="GB", today=date(2026, 1, 1))
    assert [(e.field, e.code) for e in missing.errors] == [("email", "required")]


def test_every_error_code_has_words_in_every_locale() -> None:
    codes = ["required", "email", "phone", "birthday", "postcode", "name", "choice", "pattern", "too_long"]
    codes += ["invalid", "consent_required", "needed_for", "contact", "too_fast", "expired", "rate_limited"]
    en, de = wording("en"), wording("de")
    for code in codes:
        assert en.t(f"errors.{code}", max=5, purpose="x") and de.t(f"errors.{code}", max=5, purpose="x"), code
    assert en.words.keys() == de.words.keys()
    assert en.words["labels"].keys() == de.words["labels"].keys()
    assert en.words["errors"].keys() == de.words["errors"].keys()


def test_the_locale_is_asked_then_the_browser_then_the_default() -> None:
    form = parse_form(NEWSLETTER, purposes=PURPOSES)
    assert pick_locale(form, "de", "en-GB") == "de"
    assert pick_locale(form, "fr", "de-DE,de;q=0.9,en;q=0.8") == "de"
    assert pick_locale(form, None, "fr-FR") == "en"
