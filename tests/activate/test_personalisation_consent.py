"""Personalisation consent in content, on a real home: previews, `messages send` over a real SMTP server on
loopback, journeys through the file sink, and a property test over every channel's rendition.

The world: Ann said yes to personalisation, Bob no, Cat never said, Dan said yes in his profile and no
through the API after the build (in the consent history only), and Ann's twin (the same name and views as
Ann) said no. Buyers without an address make the best sellers. Every personal value of the people who may
not get personal content must stay out of what they are sent."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiosmtpd.controller import Controller
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from omniweave.activate.content.model import BrandKit, parse_message
from omniweave.activate.content.personal import RULE, Withheld, personalised
from omniweave.activate.content.render import render, template_variables, visible_texts
from omniweave.activate.service.messages import (
    PreviewRequest,
    SendRequest,
    builtin_messages,
    preview,
    send,
    validate_message,
)
from omniweave.activate.service.personal import best_sellers_now
from omniweave.activate.service.policy import decisions
from omniweave.privacy.service.consent import record_consent
from omniweave.profiles.service.build import build_profiles, write_identities
from omniweave.runtime import Runtime
from omniweave.segments.service.evaluate import evaluate_segments, load_segments
from omniweave.settings import load_settings
from omniweave.storage.eventlog import events_to_table
from omniweave.storage.ops.ledger import Ledger
from tests.conftest import free_port
from tests.segment_events import segment_event

NOW = datetime(2026, 6, 30, tzinfo=UTC)
PEOPLE: dict[str, dict[str, Any]] = {  # user id -> identify traits; each views one product of their own
    "u1": {"first_name": "Annabel", "last_name": "Archer", "email": "ann@example.com", "personalisation_consent": True},
    "u2": {"first_name": "Roberto", "last_name": "Baker", "email": "bob@example.com", "personalisation_consent": False},
    "u3": {"first_name": "Catalina", "last_name": "Cooper", "email": "cat@example.com"},
    "u4": {
        "first_name": "Daniela",
        "last_name": "Dunmore",
        "email": "dan@example.com",
        "personalisation_consent": True,
    },
    "u5": {
        "first_name": "Annabel",
        "last_name": "Archer",
        "email": "twin@example.com",
        "personalisation_consent": False,
    },
}
VIEWED = {"u1": "SKU-ANN", "u2": "SKU-BOB", "u3": "SKU-CAT", "u4": "SKU-DAN", "u5": "SKU-ANN"}
ORDERS = [  # buyers without an address: (user, products)
    ("b1", ["SKU-B1", "SKU-B2"]),
    ("b2", ["SKU-B1", "SKU-B3"]),
    ("b3", ["SKU-B1", "SKU-B2", "SKU-B4"]),
    ("b4", ["SKU-B5", "SKU-B6"]),
]
PERSON = {"u1": "P1", "u2": "P2", "u3": "P3", "u4": "P4", "u5": "P5"}
SEGMENT = "id: everyone\nname: Everyone\nwhere:\n  trait: event_count\n  gt: 0\n"
HELLO = """
name: hello
subject: "Hi {{ person.first_name }}, picked for you"
headline: "Picked for you"
body: |
  Dear {{ person.first_name }} {{ person.last_name }},

  you looked at {{ person.viewed_not_bought | join(', ') }}.{% if recommendations %} Also: {{ recommendations | join(', ') }}.{% endif %}
cta: {text: "See them", url: "https://shop.example/picks"}
sms: {body: "Hi {{ person.first_name }}: {{ person.viewed_not_bought | join(', ') }}"}
fallbacks:
  first_name: friend
  person.last_name: of the shop
"""
SPEND = """
name: spend
subject: "Your year with us"
body: "You ordered {{ person.orders }} times, {{ person.first_name or 'friend' }}."
"""
VIP = """
name: vip
without_personalisation: skip
subject: "Just for you, {{ person.first_name or 'friend' }}"
body: "A private preview."
"""


def personal_values(user: str) -> list[str]:
    """What must never reach this person's message without their personalisation consent."""
    traits = PEOPLE[user]
    return [traits["first_name"], traits["last_name"], VIEWED[user]]


def expected_best_sellers() -> list[str]:
    """Products by the number of orders holding them, ties by product id: counted here, not by the service."""
    counted = Counter(p for _, products in ORDERS for p in set(products))
    return [p for p, _ in sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))][:5]


def _build(home: Path) -> None:
    (home / "omniweave.toml").write_text("[policy]\nquiet_hours = []\n")
    runtime = Runtime(load_settings({}, config_file=home / "omniweave.toml", home=str(home)))
    try:
        events, identities = [], []
        for n, (user, traits) in enumerate(PEOPLE.items()):
            at = f"2026-06-{n + 1:02d}T09:00:00Z"
            events.append(
                segment_event(
                    n, at, received_at=NOW, type="identify", user=user, traits={**traits, "email_opt_in": True}
                )
            )
            events.append(
                segment_event(100 + n, at, received_at=NOW, event="Product Viewed", user=user, product_id=VIEWED[user])
            )
            identities += [("user_id", user, PERSON[user]), ("email", traits["email"], PERSON[user])]
        for n, (user, products) in enumerate(ORDERS):
            items = [{"product_id": p, "price": 10.0, "quantity": 1} for p in products]
            at = f"2026-06-{n + 10:02d}T09:00:00Z"
            events.append(
                segment_event(200 + n, at, received_at=NOW, event="Order Completed", user=user, products=items)
            )
            identities.append(("user_id", user, f"B{n + 1}"))
        runtime.log.append("events", events_to_table(events, "test"), "world")
        write_identities(runtime, identities)
        build_profiles(runtime, now=NOW, traits=[])
        folder = runtime.settings.segments_folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "everyone.yaml").write_text(SEGMENT)
        (home / "messages").mkdir()
        for name, text in (("hello", HELLO), ("spend", SPEND), ("vip", VIP)):
            (home / "messages" / f"{name}.yaml").write_text(text)
        evaluate_segments(runtime, {"everyone": load_segments(runtime.settings)["everyone"]}, now=NOW)
        # Dan withdraws through the API after the build: only the consent history knows
        record_consent(runtime, "email:dan@example.com", "personalisation", False)
    finally:
        runtime.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("personal-home")
    _build(home)
    return home


@pytest.fixture
def home(built: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(built, copy)
    return copy


def _runtime(home: Path, extra: str = "") -> Runtime:
    config = home / "omniweave.toml"
    if extra:
        config.write_text(config.read_text() + extra)
    return Runtime(load_settings({}, config_file=config, home=str(home)))


@pytest.fixture
def rt(home: Path) -> Iterator[Runtime]:
    runtime = _runtime(home)
    yield runtime
    runtime.close()


def _texts(content: dict[str, Any]) -> str:
    """Every text of a rendition's content but a letter's address (where it is delivered, not personalisation)."""
    return "\n".join(str(v) for k, v in content.items() if k != "address")


# --- previews ---------------------------------------------------------------------------------------------


def test_the_best_sellers_are_the_products_in_the_most_orders(rt: Runtime) -> None:
    assert list(best_sellers_now(rt)) == expected_best_sellers() == ["SKU-B1", "SKU-B2", "SKU-B3", "SKU-B4", "SKU-B5"]


def test_a_preview_withholds_the_personal_values_of_who_said_no(rt: Runtime) -> None:
    ann = preview(rt, PreviewRequest("hello", "email:ann@example.com", "email"))
    assert ann.rendition.content["subject"] == "Hi Annabel, picked for you"
    assert "Dear Annabel Archer," in ann.rendition.content["text"] and "SKU-ANN" in ann.rendition.content["text"]
    assert not any("personalis" in note for note in ann.notes)
    best = ", ".join(expected_best_sellers())
    for user in ("u2", "u4", "u5"):  # said no: in the profile, through the API after the build, Ann's twin
        shown = preview(rt, PreviewRequest("hello", PEOPLE[user]["email"], "email"))
        content = shown.rendition.content
        assert content["subject"] == "Hi friend, picked for you"
        assert (
            "Dear friend of the shop," in content["text"] and f"you looked at {best}. Also: {best}." in content["text"]
        )
        assert not any(value in _texts(content) for value in personal_values(user)), user
        assert any("not personalised: no personalisation consent" in note for note in shown.notes)
        assert shown.findings == ()
    cat = preview(rt, PreviewRequest("hello", "cat@example.com", "sms"))  # never said: `denied` mode personalises
    assert "Hi Catalina: SKU-CAT" in cat.rendition.content["body"]
    asked = preview(rt, PreviewRequest("hello", "ann@example.com", "sms", not_personalised=True))
    assert "Hi friend: SKU-B1" in asked.rendition.content["body"] and "Annabel" not in asked.rendition.content["body"]
    assert any("as if the person had said no" in note for note in asked.notes)


def test_a_message_that_needs_personal_data_says_so_in_the_preview(rt: Runtime) -> None:
    bob = preview(rt, PreviewRequest("spend", "bob@example.com", "email"))
    assert [f.rule for f in bob.findings] == [RULE]
    assert "person.orders is personal data and has no fallback" in bob.findings[0].message
    assert any(note.startswith("a send would skip them: no personalisation consent") for note in bob.notes)
    assert "Roberto" not in _texts(bob.rendition.content)
    ann = preview(rt, PreviewRequest("spend", "ann@example.com", "email"))
    assert ann.findings == () and "You ordered 0 times, Annabel." in ann.rendition.content["text"]


def test_validate_renders_every_message_both_ways(rt: Runtime) -> None:
    from omniweave.activate.service.messages import get_message, load_brand

    brand = load_brand(rt.settings)
    spend = validate_message(get_message(rt.settings, "spend"), brand)
    spend_channels = get_message(rt.settings, "spend").channels
    found = [(f.channel, f.rule, f.severity) for f in spend.findings if f.rule == RULE]
    assert found == [(c, RULE, "warning") for c in spend_channels]
    assert spend.ok  # a warning: such a person is skipped, the others get it
    for name in ("hello", "vip"):  # fallbacks for all it prints; vip is never sent unpersonalised
        assert not [f for f in validate_message(get_message(rt.settings, name), brand).findings if f.rule == RULE]
    for name, message in builtin_messages().items():  # the shipped library renders without personal data
        assert not [f for f in validate_message(message, brand).findings if f.rule == RULE], name


# --- messages send over a real SMTP server --------------------------------------------------------------


@dataclass
class Mailbox:
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.original_content or envelope.content, policy=default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 2.0.0 queued"


@pytest.fixture
def smtp_rt(home: Path) -> Iterator[tuple[Runtime, Mailbox]]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    runtime = _runtime(
        home,
        f"""
[channels]
public_url = "https://news.example.com"
[channels.email]
enabled = true
host = "127.0.0.1"
port = {controller.port}
security = "plain"
from_address = "shop@example.com"
unsubscribe_mailto = "unsubscribe@example.com"
timeout_seconds = 5.0
""",
    )
    yield runtime, box
    runtime.close()
    controller.stop()


def _mail_text(mail: EmailMessage) -> str:
    parts = [str(mail["Subject"])]
    for kind in ("plain", "html"):
        body = mail.get_body((kind,))
        assert body is not None
        parts.append(body.get_content())
    return "\n".join(parts)


def test_messages_send_over_smtp_never_mails_a_personal_value_without_consent(
    smtp_rt: tuple[Runtime, Mailbox],
) -> None:
    rt, box = smtp_rt
    report = send(rt, SendRequest("hello", "everyone", "email"))
    assert report.counts() == {"delivered": 5, "skipped": 4}  # the buyers have no e-mail address
    got = {str(m["To"]): _mail_text(m) for m in box.messages}
    assert set(got) == {traits["email"] for traits in PEOPLE.values()}
    assert "Hi Annabel, picked for you" in got["ann@example.com"] and "SKU-ANN" in got["ann@example.com"]
    assert "Hi Catalina" in got["cat@example.com"]
    for user in ("u2", "u4", "u5"):
        text = got[PEOPLE[user]["email"]]
        assert "Hi friend, picked for you" in text and "SKU-B1" in text
        assert not any(value in text for value in personal_values(user)), user

    spend = send(rt, SendRequest("spend", "everyone", "email"))
    reasons = {(o.outcome, o.reason, o.count) for o in spend.outcomes}
    skipped = [o for o in spend.outcomes if o.outcome == "skipped" and o.reason != "no email address"]
    assert spend.counts() == {"delivered": 2, "skipped": 3 + 4}, reasons
    # Bob and the twin said no in their profiles, Dan through the API since: the history's no wins
    assert [o.count for o in skipped] == [3] and "person.orders is personal data" in skipped[0].reason
    assert skipped[0].reason.startswith("no personalisation consent (consent_purpose_personalisation: no) and body:")
    # recorded like the policy's own verdicts
    dropped = [d for d in decisions(rt.store.engine, person_id="P2") if d.key.startswith("msg:spend:")]
    assert [d.outcome for d in dropped] == ["drop"] and "no personalisation consent" in (dropped[0].reason or "")
    mailed = [str(m["To"]) for m in box.messages[5:]]
    assert sorted(mailed) == ["ann@example.com", "cat@example.com"]

    vip = send(rt, SendRequest("vip", "everyone", "email", dry_run=True))
    assert vip.counts() == {"would_send": 2, "skipped": 3 + 4}
    assert {(o.reason, o.count) for o in vip.outcomes if o.outcome == "skipped"} == {
        ("no email address", 4),
        (
            "no personalisation consent (consent_purpose_personalisation: no) and vip is sent only personalised "
            "(without_personalisation: skip)",
            3,
        ),
    }


def test_not_granted_mode_falls_back_unless_a_yes_was_stated(home: Path) -> None:
    rt = _runtime(home, '\n[privacy]\npersonalisation = "not_granted"\n')
    try:
        cat = preview(rt, PreviewRequest("hello", "cat@example.com", "sms"))
        assert "Hi friend: SKU-B1" in cat.rendition.content["body"] and "Catalina" not in cat.rendition.content["body"]
        vip = send(rt, SendRequest("vip", "everyone", "email", dry_run=True))
        assert vip.counts() == {"would_send": 1, "skipped": 4 + 4}  # only Ann said yes (Dan took it back)
    finally:
        rt.close()
    rt = _runtime(home, '\nwithout_personalisation = "skip"\n')  # appended to the [privacy] table above
    try:
        hello = send(rt, SendRequest("hello", "everyone", "email", dry_run=True))
        assert hello.counts() == {"would_send": 1, "skipped": 4 + 4}
    finally:
        rt.close()


def test_a_bad_setting_or_message_field_is_named(home: Path) -> None:
    from omniweave.errors import ConfigError, InputError

    with pytest.raises(ConfigError, match="personalisation must be denied or not_granted, got 'maybe'"):
        _runtime(home, '\n[privacy]\npersonalisation = "maybe"\n')
    with pytest.raises(InputError) as caught:
        parse_message({"name": "x", "body": "Hi", "fallbacks": {"first_name": True}, "without_personalisation": "no"})
    assert "fallbacks.first_name: expected a text or a list of texts; got True" in str(caught.value)
    assert "without_personalisation: expected fallback or skip; got 'no'" in str(caught.value)


# --- the API's preview ------------------------------------------------------------------------------------


def test_the_api_preview_honours_consent_scopes_and_masking(rt: Runtime) -> None:
    from fastapi.testclient import TestClient

    from omniweave.privacy.service import access
    from omniweave.shells.api.app import create_app

    reader = access.create_api_key(rt, "reader", ["profiles:read"], actor="cli:test").key
    other = access.create_api_key(rt, "config", ["config:manage"], actor="cli:test").key
    access.create_user(rt, "analyst@staff.example", "Analyst", "analyst", "correct horse battery", actor="cli:test")
    with TestClient(create_app(rt.settings), base_url="https://testserver") as client:

        def shown(person: str, key: str = reader, **extra: str) -> Any:
            params = {"person": person, "channel": "email", **extra}
            return client.get("/v1/messages/hello/preview", params=params, headers={"Authorization": f"Bearer {key}"})

        ann = shown("email:ann@example.com")
        assert ann.status_code == 200, ann.text
        assert ann.json()["rendition"]["content"]["subject"] == "Hi Annabel, picked for you"
        bob = shown("email:bob@example.com").json()
        assert bob["rendition"]["content"]["subject"] == "Hi friend, picked for you"
        assert not any(value in orjson.dumps(bob["rendition"]).decode() for value in personal_values("u2"))
        assert any("not personalised" in note for note in bob["notes"])
        asked = shown("email:ann@example.com", not_personalised="true").json()
        assert asked["rendition"]["content"]["subject"] == "Hi friend, picked for you"
        assert shown("email:ann@example.com", key=other).status_code == 403
        unknown = client.get(
            "/v1/messages/nope/preview",
            params={"person": "P1", "channel": "email"},
            headers={"Authorization": f"Bearer {reader}"},
        )
        assert unknown.status_code == 400 and "no message 'nope'" in unknown.text
        login = client.post(
            "/v1/auth/login", json={"email": "analyst@staff.example", "password": "correct horse battery"}
        )
        assert login.status_code == 200, login.text
        analyst = client.get(
            "/v1/messages/hello/preview", params={"person": "email:ann@example.com", "channel": "email"}
        )
        assert analyst.status_code == 200, analyst.text
        body = analyst.json()
        assert body["rendition"]["content"]["subject"] == "Hi friend, picked for you"
        assert "ann@example.com" not in analyst.text and "Annabel" not in analyst.text


# --- journeys, through the file sink --------------------------------------------------------------------


def test_a_journey_sends_the_fallbacks_and_skips_with_the_reason(rt: Runtime, tmp_path: Path) -> None:
    from omniweave.activate.journeys.definition import parse_journey
    from omniweave.activate.service.journey_stats import explain, journey_stats
    from omniweave.activate.service.journeys import JourneyEngine, publish, sink_keys

    for name, message in (("hi", "hello"), ("spending", "spend")):
        definition = {
            "name": name,
            "entry": {"api": True},
            "start": "send",
            "steps": {
                "send": {"send": {"message": message, "channel": "email"}, "next": "done"},
                "done": {"exit": "done"},
            },
        }
        publish(rt, parse_journey(definition, name))
    sink = tmp_path / "sink.jsonl"
    engine = JourneyEngine(rt, sink=str(sink), clock=lambda: NOW.replace(hour=12).timestamp())
    persons = sorted(PERSON.values())  # Ann (P1) before her twin (P5): the render cache must not hand hers on
    assert engine.enter_many("hi", persons, "launch") == 5
    assert engine.enter_many("spending", persons, "launch") == 5
    while engine.consume() or engine.step():
        pass
    engine.dispatch()
    rows = {r.key: r for r in Ledger(rt.store.engine).rows()}
    sent = {r.person_id: orjson.loads(r.content) for r in rows.values() if r.message_name == "hello"}
    assert set(sent) == set(persons) and {r.status for r in rows.values()} == {"delivered"}
    assert sorted(sink_keys(sink)) == sorted(rows)
    assert sent["P1"]["subject"] == "Hi Annabel, picked for you" and "SKU-ANN" in sent["P1"]["text"]
    for user in ("u2", "u4", "u5"):
        content = sent[PERSON[user]]
        assert content["subject"] == "Hi friend, picked for you", user
        assert not any(value in _texts(content) for value in personal_values(user)), user
    spent = sorted(r.person_id or "" for r in rows.values() if r.message_name == "spend")
    assert spent == ["P1", "P3"]
    stats = {n.node: n for n in journey_stats(rt, "spending").nodes}
    skipped = stats["send"].skipped
    assert sum(skipped.values()) == 3 and all("person.orders is personal data" in r for r in skipped), skipped
    why = explain(rt, "P2", journey="spending").runs[0]
    assert any(s["outcome"] == "skipped" and "no personalisation consent" in (s["reason"] or "") for s in why.steps)
    twin = explain(rt, "P5", journey="hi").runs[0]
    assert any("(not personalised: no personalisation consent)" in (s["reason"] or "") for s in twin.steps)


# --- the property: no personal value of someone who may not be personalised, on any channel -------------

MARK = "Qz9"  # every personal value carries it; no template, fallback, brand or best seller does
personal_text = st.from_regex(r"[A-Za-z]{0,6}", fullmatch=True).map(lambda s: f"{MARK}{s}")
SNIPPETS = (
    "{{ person.first_name }}",
    "{{ person.first_name or 'there' }}",
    "{% if person.last_name %}{{ person.last_name }}{% endif %}",
    "{{ person.last_name | default('friend') }}",
    "{{ person.city }}",
    "{{ person.viewed_not_bought | join(', ') }}",
    "{{ recommendations | join(', ') }}",
    "{% for p in recommendations %}{{ p }} {% endfor %}",
    "{{ person.orders }}",
    "{{ person.first_name | upper }}",
    "{{ person.favourite_categories[0] }}",
    "{{ person.total_revenue > 10 }}",
    "{{ personalised }}",
    "{{ best_sellers | join(', ') }}",
    "{{ person.person_id }}",
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    profile=st.fixed_dictionaries(
        {
            "first_name": personal_text,
            "last_name": personal_text,
            "city": personal_text,
            "viewed_not_bought": st.lists(personal_text, min_size=1, max_size=3),
            "recommended_products": st.lists(personal_text, max_size=3),
            "favourite_categories": st.lists(personal_text, min_size=1, max_size=2),
            "orders": st.integers(1, 10**6).map(lambda n: int(f"97531{n}")),
            "total_revenue": st.floats(11, 1e6),
        }
    ),
    picks=st.lists(st.sampled_from(SNIPPETS), min_size=1, max_size=5),
    fallbacks=st.dictionaries(
        st.sampled_from(["first_name", "person.city", "recommendations", "orders"]),
        st.one_of(st.sampled_from(["friend", "our town"]), st.lists(st.sampled_from(["SKU-F1", "SKU-F2"]))),
        max_size=2,
    ),
    best=st.lists(st.sampled_from(["SKU-B1", "SKU-B2", "SKU-B3"]), max_size=3, unique=True),
    channel=st.sampled_from(["email", "sms", "whatsapp", "push", "print"]),
)
def test_no_personal_value_reaches_any_channel_without_consent(
    profile: dict[str, Any],
    picks: list[str],
    fallbacks: dict[str, Any],
    best: list[str],
    channel: str,
) -> None:
    """Whatever the templates say and whatever fallbacks are declared: a rendition for a person who may not
    be personalised either fails with `personal-without-consent` (the send is skipped) or holds none of
    their values — in every text of every channel but a letter's address."""
    row = {"person_id": "P-1", "consent_email": True, "consent_purpose_personalisation": False, **profile}
    text = " ".join(picks)
    document = {
        "name": "prop",
        "subject": text,
        "headline": text,
        "body": text,
        "cta": {"text": "Go", "url": "https://shop.example/x"},
        "sms": {"body": text},
        "whatsapp": {"template": "t_v1", "parameters": [text]},
        "push": {"title": "Hello", "body": text},
        "print": {"body": text},
        "fallbacks": fallbacks,
    }
    message = parse_message(document)
    brand = BrandKit()
    variables = template_variables(row, brand, message, personalised=False, best_sellers=best)
    rendition = render(message, brand, channel, variables, address=("Occupant", "1 High St"))
    if any(p.rule == RULE for p in rendition.problems):
        event("cannot render without personal data")
        return  # skipped by every send path (tested above): nothing goes out
    event("rendered with fallbacks")
    shown = "\n".join(v for k, v in visible_texts(rendition).items() if k != "address")
    assert MARK not in shown and MARK not in orjson.dumps({**rendition.content, "address": []}).decode()
    assert str(profile["orders"]) not in shown
    # and the same person with consent gets their own values wherever a template prints one
    own = render(message, brand, channel, template_variables(row, brand, message, best_sellers=best))
    if "{{ person.first_name }}" in picks and not own.problems:
        assert profile["first_name"] in "\n".join(visible_texts(own).values())


def test_withheld_values_and_the_modes() -> None:
    assert personalised(None) and personalised(True) and not personalised(False)
    assert not personalised(None, "not_granted") and personalised(True, "not_granted")
    hidden = Withheld("person.first_name", "there")
    assert not hidden and str(hidden) == "there" and repr(hidden) == "Withheld"
