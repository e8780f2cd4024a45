"""Content: message files, renditions per channel, and the checker's rules (a table of bad messages)."""

from __future__ import annotations

from email import message_from_string
from typing import Any

import pytest

from omniweave.activate.content.checker import Limits, check
from omniweave.activate.content.model import BrandKit, MessageError, parse_brand, parse_message
from omniweave.activate.content.render import UNSUBSCRIBE_MARKER, RenderError, render, template_variables
from omniweave.activate.service.messages import SAMPLE_ADDRESS, SAMPLE_PERSON, builtin_messages, validate_message
from omniweave.channels.sms.encoding import count_segments

BRAND = BrandKit(
    name="Shop.example",
    voice_avoid=("cheap", "last chance"),
    legal=("Shop.example Ltd, registered in England.",),
    footer="1 High Street, London",
    logo="https://shop.example/logo.png",
)
PERSON = {"person_id": "P1", "first_name": "Zoë", "last_name": "Adams", "recommended_products": ["SKU-3", "SKU-4"]}

GOOD: dict[str, Any] = {
    "name": "spring",
    "subject": "{{ person.first_name }}, spring is here",
    "preheader": "New in store",
    "headline": "Fresh for spring",
    "body": "Hi {{ person.first_name }},\n\nthe **new** range is in. [See it](https://shop.example/spring).",
    "cta": {"text": "Shop spring", "url": "https://shop.example/spring"},
    "offer": {"text": "10% off with {{ offer.code }}"},
    "image": "https://shop.example/spring.jpg",
    "sms": {"body": "Fresh for spring: 10% off with {{ offer.code }} https://shop.example/spring"},
    "whatsapp": {"template": "spring_v1", "parameters": ["{{ person.first_name }}", "{{ offer.code }}"]},
    "push": {
        "title": "Fresh for spring",
        "body": "The new range is in store and online.",
        "url": "https://shop.example/spring",
    },
}


def _rendition(document: dict[str, Any], channel: str, person: dict[str, Any] | None = None, **kw: Any):  # type: ignore[no-untyped-def]
    message = parse_message(document)
    variables = template_variables(PERSON if person is None else person, BRAND, message, offer_code="ABCD-EFGH-JK")
    return render(message, BRAND, channel, variables, address=SAMPLE_ADDRESS, **kw)


def _rules(document: dict[str, Any], channel: str, limits: Limits | None = None) -> set[str]:
    return {f.rule for f in check(_rendition(document, channel), BRAND, limits)}


@pytest.mark.parametrize("channel", ["email", "sms", "whatsapp", "push", "print"])
def test_a_good_message_has_no_finding_on_any_channel(channel: str) -> None:
    rendition = _rendition(GOOD, channel)
    findings = check(rendition, BRAND, Limits(whatsapp_window_open=False))
    assert findings == [], [f.to_dict() for f in findings]


BAD: list[tuple[str, str, dict[str, Any], str, Limits | None]] = [
    ("too many SMS segments", "sms", {"sms": {"body": "Spring offers! " * 25}}, "sms-segments", None),
    (
        "three segments over a limit of two, one allowed",
        "sms",
        {"sms": {"body": "x" * 200}},
        "sms-segments",
        Limits(max_sms_segments=1),
    ),
    ("a stray curly quote makes UCS-2", "sms", {"sms": {"body": "It’s spring at Shop.example"}}, "sms-ucs2", None),
    ("promotional SMS without opt-out", "sms", {}, "unsubscribe-missing", None),
    ("promotional e-mail without unsubscribe", "email", {}, "unsubscribe-missing", None),
    ("a forbidden brand word", "email", {"headline": "Cheap spring deals"}, "brand-forbidden-word", None),
    ("a forbidden phrase in an SMS", "sms", {"sms": {"body": "Last  chance for spring"}}, "brand-forbidden-word", None),
    ("an undefined variable", "email", {"subject": "Hi {{ person.nickname }}"}, "undefined-variable", None),
    ("an undefined top-level variable", "push", {"push": {"title": "{{ weather }}"}}, "undefined-variable", None),
    ("a push title too long", "push", {"push": {"title": "T" * 51, "body": "b"}}, "push-title-length", None),
    ("a push body too long", "push", {"push": {"title": "t", "body": "b" * 151}}, "push-body-length", None),
    (
        "free-form WhatsApp outside the window",
        "whatsapp",
        {"whatsapp": {"body": "Hello"}},
        "whatsapp-template-required",
        Limits(whatsapp_window_open=False),
    ),
    ("an empty subject", "email", {"subject": "{{ '' }}"}, "subject-empty", None),
    ("an http CTA link", "email", {"cta": {"text": "Go", "url": "http://shop.example/spring"}}, "insecure-link", None),
    ("an http push link", "push", {"push": {"title": "t", "url": "http://shop.example"}}, "insecure-link", None),
    ("a sandbox refusal", "email", {"headline": "{{ person.__class__.__mro__ }}"}, "template-error", None),
]


@pytest.mark.parametrize(("why", "channel", "change", "rule", "limits"), BAD, ids=[b[0] for b in BAD])
def test_each_bad_message_is_caught_by_its_rule(
    why: str, channel: str, change: dict[str, Any], rule: str, limits: Limits | None
) -> None:
    document = {**GOOD, **change}
    if rule == "unsubscribe-missing":
        document["class"] = "promotional"
    assert rule not in _rules(GOOD, channel, limits), f"the good message already breaks {rule}"
    rendition = _rendition(document, channel)
    if rule == "unsubscribe-missing":  # remove what the renderer adds, as a hand-made rendition would lack it
        content = dict(rendition.content)
        for key in ("html", "text"):
            if key in content:
                content[key] = content[key].replace(UNSUBSCRIBE_MARKER, "")
        if channel == "sms":
            content["body"] = content["body"].replace("Reply STOP to opt out", "")
        rendition = type(rendition)(**{**rendition.__dict__, "content": content})
    found = check(rendition, BRAND, limits)
    assert rule in {f.rule for f in found}, f"{why}: {[f.to_dict() for f in found]}"
    assert all(f.channel == channel and f.message for f in found)


def test_missing_text_part_is_caught() -> None:
    rendition = _rendition(GOOD, "email")
    bare = type(rendition)(**{**rendition.__dict__, "content": {**rendition.content, "text": ""}})
    assert "email-text-missing" in {f.rule for f in check(bare, BRAND)}


def test_a_letter_without_an_address_is_caught() -> None:
    message = parse_message(GOOD)
    rendition = render(message, BRAND, "letter", template_variables(PERSON, BRAND, message))
    assert rendition.channel == "print"
    assert "letter-address-missing" in {f.rule for f in check(rendition, BRAND)}


def test_whatsapp_free_form_is_a_warning_when_the_window_is_unknown_and_fine_inside_it() -> None:
    document = {**GOOD, "whatsapp": {"body": "Hello {{ person.first_name }}"}}
    unknown = check(_rendition(document, "whatsapp"), BRAND, Limits())
    assert [(f.rule, f.severity) for f in unknown] == [("whatsapp-template-required", "warning")]
    assert check(_rendition(document, "whatsapp"), BRAND, Limits(whatsapp_window_open=True)) == []


def test_strict_undefined_names_the_variable_and_the_field() -> None:
    document = {**GOOD, "subject": "Hi {{ person.nickname }}", "headline": "{{ wether }}"}
    rendition = _rendition(document, "email")
    problems = {p.field: p.message for p in rendition.problems}
    assert "person.nickname is undefined" in problems["subject"]
    assert "'wether' is undefined" in problems["headline"]
    assert rendition.content["subject"] == ""  # never a message with half a template in it
    with pytest.raises(RenderError, match=r"person\.nickname is undefined") as caught:
        _rendition(document, "email", strict=True)
    assert caught.value.field == "subject"


def test_a_profile_value_that_is_null_renders_empty_and_or_gives_a_fallback() -> None:
    document = {**GOOD, "subject": "{{ person.first_name or 'Hello' }}, spring{{ person.last_name }}"}
    rendition = _rendition(document, "email", person={"person_id": "P2", "first_name": None, "last_name": None})
    assert rendition.content["subject"] == "Hello, spring"


def test_email_rendition_html_and_text() -> None:
    rendition = _rendition(GOOD, "email")
    html, text = rendition.content["html"], rendition.content["text"]
    assert rendition.content["subject"] == "Zoë, spring is here"
    assert "<style>" not in html and 'style="' in html  # CSS inlined; the media query kept for small screens
    assert "@media only screen" in html
    assert 'href="https://shop.example/spring"' in html and "<strong>new</strong>" in html
    assert UNSUBSCRIBE_MARKER in html and UNSUBSCRIBE_MARKER in text
    assert "https://shop.example/logo.png" in html and "#1F6F5C" in html
    assert "Shop.example Ltd, registered in England." in html and "Shop.example Ltd, registered in England." in text
    assert "See it (https://shop.example/spring)" in text and "ABCD-EFGH-JK" in text
    # the rendition is what the e-mail channel sends: it parses as a MIME body once built
    parsed = message_from_string(f"Subject: {rendition.content['subject']}\n\n{text}")
    assert parsed["Subject"] == "Zoë, spring is here"


def test_sms_rendition_has_prefix_opt_out_and_segments() -> None:
    rendition = _rendition(GOOD, "sms")
    body = rendition.content["body"]
    assert body.startswith("Shop.example: Fresh for spring") and body.endswith("Reply STOP to opt out")
    assert rendition.segments == count_segments(body) and rendition.segments.segments == 1
    transactional = _rendition({**GOOD, "class": "transactional"}, "sms")
    assert "STOP" not in transactional.content["body"]


def test_other_channels_renditions() -> None:
    whatsapp = _rendition(GOOD, "whatsapp").content
    assert whatsapp == {"template": "spring_v1", "parameters": ["Zoë", "ABCD-EFGH-JK"]}
    push = _rendition(GOOD, "push").content
    assert push["title"] == "Fresh for spring" and push["url"] == "https://shop.example/spring"
    letter = _rendition(GOOD, "print", qr_url="https://short.example/q/abc").content
    assert letter["address"] == list(SAMPLE_ADDRESS) and letter["qr_url"] == "https://short.example/q/abc"
    assert "Hi Zoë," in letter["text"] and "1 High Street, London" in letter["text"]


def test_recommendations_and_brand_in_templates() -> None:
    document = {**GOOD, "body": "For you: {{ recommendations | join(', ') }} from {{ brand.name }}"}
    assert "For you: SKU-3, SKU-4 from Shop.example" in _rendition(document, "email").content["text"]


def test_a_message_file_with_many_problems_reports_them_all() -> None:
    document = {
        "name": "bad name!",
        "class": "spammy",
        "subject": "{{ person.first_name ",
        "cta": {"text": "Go", "url": "ftp://shop.example", "colour": "red"},
        "offer": {"pool": "no spaces allowed"},
        "channels": ["email", "fax"],
        "push": {"title": "t", "sound": "ding"},
        "whatsapp": {"template": "has spaces", "parameters": 3},
        "unknown": 1,
    }
    with pytest.raises(MessageError) as caught:
        parse_message(document, source="messages/bad.yaml")
    paths = {path for path, _ in caught.value.problems}
    assert paths >= {
        "name",
        "class",
        "subject",
        "cta.url",
        "cta.colour",
        "offer.text",
        "offer.pool",
        "channels[1]",
        "push.sound",
        "whatsapp.template",
        "whatsapp.parameters",
        "unknown",
    }
    text = str(caught.value)
    assert (
        "messages/bad.yaml" in text and "got 'spammy'" in text and "expected one of promotional, transactional" in text
    )
    assert "template syntax error" in text


def test_brand_kit_problems_reported_at_once() -> None:
    with pytest.raises(MessageError) as caught:
        parse_brand(
            {"colours": {"primary": "green", "shade": "#000"}, "logo": "http://x/logo.png", "voice": {"avoid": "cheap"}}
        )
    assert {p for p, _ in caught.value.problems} == {"colours.primary", "colours.shade", "logo", "voice.avoid"}
    kit = parse_brand({"name": "Acme", "voice": {"avoid": ["cheap"]}, "senders": {"letter": "Acme, 1 Road"}})
    assert kit.voice_avoid == ("cheap",) and kit.senders == {"print": "Acme, 1 Road"} and kit.colours["primary"]


def test_the_builtin_library_is_valid_under_the_checker() -> None:
    from omniweave.activate.service.messages import load_brand
    from omniweave.settings import Settings

    library = builtin_messages()
    assert {"cart_reminder", "welcome_till_capture", "store_event_invitation", "birthday_coupon"} <= set(library)
    brand = load_brand(Settings(home="/nonexistent-omniweave-home"))
    for message in library.values():
        validation = validate_message(message, brand)
        assert validation.ok, [f.to_dict() for f in validation.findings]
        assert not [f for f in validation.findings if f.severity == "warning"], validation.findings
    assert SAMPLE_PERSON["first_name"]


def test_our_own_short_link_under_an_http_public_url_is_a_warning_other_http_links_errors() -> None:
    own = _rendition(GOOD, "print", qr_url="http://127.0.0.1:8787/q/abc")
    found = check(own, BRAND, Limits(own_url="http://127.0.0.1:8787"))
    assert [(f.rule, f.severity) for f in found] == [("insecure-link", "warning")]
    assert [(f.rule, f.severity) for f in check(own, BRAND)] == [("insecure-link", "error")]
