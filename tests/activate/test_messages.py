"""Messages on a real home: personalised previews from built profiles, sends to an evaluated segment
through consent, suppression, the checker and the dispatcher (FakeChannel and the shipped fakes), once."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from omniweave.activate.service.coupons import create_pool
from omniweave.activate.service.messages import PreviewRequest, SendRequest, preview, send, send_key
from omniweave.channels.fake import FakeChannel
from omniweave.channels.port import Transient
from omniweave.errors import InputError
from omniweave.profiles.service.build import build_profiles, write_identities
from omniweave.runtime import Runtime
from omniweave.segments.service.evaluate import evaluate_segments, load_segments
from omniweave.settings import Settings, load_settings
from omniweave.storage.eventlog import events_to_table
from omniweave.storage.ops.ledger import Ledger
from tests.conftest import omniweave_cmd
from tests.segment_events import segment_event

NOW = datetime(2026, 6, 30, tzinfo=UTC)
PEOPLE: list[tuple[str, dict[str, Any]]] = [
    (
        "u1",
        {
            "first_name": "Ann",
            "email": "ann@example.com",
            "phone": "+447700900001",
            "email_opt_in": True,
            "sms_opt_in": True,
            "mail_opt_in": True,
            "address": {"street": "1 Rose Lane", "city": "London", "postalCode": "N1 1AA", "country": "GB"},
        },
    ),
    ("u2", {"first_name": "Bob", "email": "bob@example.com", "email_opt_in": False}),
    ("u3", {"first_name": "Cat", "email": "cat@example.com", "email_opt_in": True}),
    ("u4", {"first_name": "Dan", "email_opt_in": True}),
    (
        "u5",
        {
            "email": "eve@example.com",
            "email_opt_in": True,
            "sms_opt_in": True,
            "push_opt_in": True,
            "phone": "07700 900005",
        },
    ),
]
SEGMENT = "id: everyone\nname: Everyone\nwhere:\n  trait: event_count\n  gt: 0\n"
MESSAGE = """
name: spring
campaign: spring-2026
subject: "{{ person.first_name or 'Hello' }}, spring is here"
headline: "Fresh for spring"
body: |
  Hi {{ person.first_name or 'there' }},

  the new range is in. Your code: {{ offer.code }}
offer:
  text: "10% off with {{ offer.code }}"
  pool: spring
cta:
  text: "Shop spring"
  url: "https://shop.example/spring"
sms:
  body: "Hi {{ person.first_name or 'there' }}, 10% off spring with {{ offer.code }}"
"""


def _build(home: Path) -> None:
    settings = Settings(home=str(home))
    # these tests send at the wall clock's time: no quiet hours, or a run at night would skip everyone
    # (the policy engine's rules are tested in test_policy.py and test_policy_service.py)
    (home / "omniweave.toml").write_text("[policy]\nquiet_hours = []\n")
    runtime = Runtime(settings)
    try:
        events, identities = [], []
        for n, (user, traits) in enumerate(PEOPLE):
            at = f"2026-06-{n + 1:02d}T09:00:00Z"
            events.append(segment_event(n, at, received_at=NOW, type="identify", user=user, traits=traits))
            events.append(
                segment_event(100 + n, at, received_at=NOW, event="Product Viewed", user=user, product_id="SKU-1")
            )
            person = f"P{n + 1}"
            identities.append(("user_id", user, person))
            if "email" in traits:
                identities.append(("email", traits["email"], person))
            if "phone" in traits:  # the identity graph holds E.164; the profile keeps what the person typed
                identities.append(("phone", "+44" + traits["phone"].replace(" ", "")[-10:], person))
        runtime.log.append("events", events_to_table(events, "test"), "world")
        write_identities(runtime, identities)
        build_profiles(runtime, now=NOW, traits=[])
        folder = settings.segments_folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "everyone.yaml").write_text(SEGMENT)
        (home / "messages").mkdir()
        (home / "messages" / "spring.yaml").write_text(MESSAGE)
        segments = load_segments(settings)
        evaluate_segments(runtime, {"everyone": segments["everyone"]}, now=NOW)
        create_pool(runtime, "spring", length=8, valid_days=30)
        Ledger(runtime.store.engine).suppress("email", "cat@example.com", "unsubscribe", "test")
    finally:
        runtime.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("messages-home")
    _build(home)
    return home


@pytest.fixture
def home(built: Path, tmp_path: Path) -> Path:
    """A fresh copy of the built home for each test (sends change the ledger)."""
    copy = tmp_path / "home"
    shutil.copytree(built, copy)
    return copy


@pytest.fixture
def rt(home: Path) -> Iterator[Runtime]:
    runtime = Runtime(load_settings({}, config_file=home / "omniweave.toml", home=str(home)))
    yield runtime
    runtime.close()


def test_preview_is_personalised_from_the_profile(rt: Runtime, home: Path) -> None:
    result = preview(rt, PreviewRequest("spring", "email:ANN@example.com", "email"))
    assert result.person_id == "P1" and result.to == "ann@example.com"
    content = result.rendition.content
    assert content["subject"] == "Ann, spring is here"
    assert "Hi Ann," in content["text"] and "XXXX-XXXX-XX" in content["text"]  # the code is issued at send
    assert result.findings == ()
    assert any("issued at send" in note for note in result.notes)
    sms = preview(rt, PreviewRequest("spring", "P1", "sms"))
    assert sms.rendition.segments is not None and sms.rendition.segments.segments == 1
    assert sms.rendition.content["body"].startswith("Shop.example: Hi Ann, 10% off spring")
    doc = orjson.loads(orjson.dumps(sms.to_dict()))
    assert doc["rendition"]["segments"]["encoding"] == "GSM-7"
    # the person's own traits: Eve has no first name, Bob no e-mail consent (a send would skip him)
    assert (
        preview(rt, PreviewRequest("spring", "eve@example.com", "email"))
        .rendition.content["subject"]
        .startswith("Hello,")
    )
    bob = preview(rt, PreviewRequest("spring", "bob@example.com", "email"))
    assert any("no email consent" in note for note in bob.notes)


def test_preview_names_an_undefined_variable_and_bad_requests(rt: Runtime, home: Path) -> None:
    (home / "messages" / "typo.yaml").write_text("subject: 'Hi {{ person.frist_name }}'\nbody: Hello\n")
    result = preview(rt, PreviewRequest("typo", "P1", "email"))
    undefined = [f for f in result.findings if f.rule == "undefined-variable"]
    assert undefined and "person.frist_name is undefined" in undefined[0].message
    with pytest.raises(InputError, match="no message 'nope'"):
        preview(rt, PreviewRequest("nope", "P1", "email"))
    with pytest.raises(InputError, match="expected one of email, sms"):
        preview(rt, PreviewRequest("spring", "P1", "fax"))
    with pytest.raises(InputError, match="no person matches"):
        preview(rt, PreviewRequest("spring", "email:nobody@example.com", "email"))


def test_send_to_a_segment_skips_with_reasons_and_sends_once(rt: Runtime) -> None:
    dry = send(rt, SendRequest("spring", "everyone", "email", dry_run=True))
    assert dry.members == 5
    assert dry.counts() == {"would_send": 2, "skipped": 3}
    reasons = {(o.outcome, o.reason) for o in dry.outcomes}
    assert ("skipped", "no email address") in reasons  # Dan
    assert ("skipped", "no email consent (consent_email is false: opted out)") in reasons  # Bob
    assert any(o.reason.startswith("suppressed (") for o in dry.outcomes)  # Cat unsubscribed
    assert Ledger(rt.store.engine).rows("pending") == [] and Ledger(rt.store.engine).rows("delivered") == []

    fake = FakeChannel("email")
    seen: list[tuple[int, int]] = []
    report = send(
        rt,
        SendRequest("spring", "everyone", "email"),
        channels={"email": fake},
        progress=lambda d, t: seen.append((d, t)),
    )
    assert report.counts() == {"delivered": 2, "skipped": 3}
    assert seen[-1] == (5, 5)
    sent = {m.to: (m, key) for m, key in fake.sent}
    assert set(sent) == {"ann@example.com", "eve@example.com"}
    ann, key = sent["ann@example.com"]
    assert key == send_key("spring", "everyone", "P1", "email") == "msg:spring:everyone:P1:email"
    assert ann.campaign == "spring-2026" and ann.message_name == "spring" and ann.person_id == "P1"
    assert ann.content["subject"] == "Ann, spring is here"
    # each recipient got their own coupon, recorded against this send
    from omniweave.activate.service.coupons import find

    codes = {to: m.content["text"].split("Your code: ")[1].split()[0] for to, (m, _) in sent.items()}
    assert len(set(codes.values())) == 2
    coupon = find(rt, codes["ann@example.com"])
    assert coupon is not None and coupon.person_id == "P1" and coupon.send_key == key and coupon.channel == "email"
    assert "XXXX" not in ann.content["html"] and codes["ann@example.com"] in ann.content["html"]

    again = send(rt, SendRequest("spring", "everyone", "email"), channels={"email": fake})
    assert again.counts() == {"already_sent": 2, "skipped": 3}
    assert len(fake.sent) == 2  # nothing new went out


def test_sms_send_retries_through_the_dispatcher_and_reports_statuses(rt: Runtime) -> None:
    fake = FakeChannel("sms", script=[Transient("HTTP 503")])
    report = send(rt, SendRequest("spring", "everyone", "sms"), channels={"sms": fake})
    counts = report.counts()
    assert counts["retrying"] + counts["delivered"] == 2 and counts["retrying"] == 1
    assert [(o.outcome, o.reason, o.count) for o in report.outcomes if o.outcome == "skipped"] == [
        ("skipped", "no sms address", 3)
    ]
    assert {m.to for m, _ in fake.sent} == {"+447700900001", "+447700900005"}  # a national number sent as E.164
    body = fake.sent[0][0].content["body"]
    assert body.endswith("Reply STOP to opt out") and body.startswith("Shop.example: Hi ")


def test_a_channel_that_is_not_configured_and_a_segment_never_evaluated(rt: Runtime) -> None:
    with pytest.raises(InputError, match=r"\[channels.email\]"):
        send(rt, SendRequest("spring", "everyone", "email"), channels={})
    with pytest.raises(InputError, match="no segment 'nobody'"):
        send(rt, SendRequest("spring", "nobody", "email", dry_run=True))


def test_messages_commands(home: Path, tmp_path: Path) -> None:
    """The CLI in process (typer's runner: the real commands, without paying a process start per call)."""
    from typer.testing import CliRunner

    from omniweave.shells.cli.main import app

    runner = CliRunner()

    def run(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(app, ["--home", str(home), "messages", *args], env={"COLUMNS": "100"})

    html = tmp_path / "ann.html"
    shown = run("preview", "spring", "--person", "email:ann@example.com", "--channel", "email", "--html-out", str(html))
    assert shown.exit_code == 0, shown.output
    assert "Ann, spring is here" in shown.stdout and "findings: none" in shown.stdout
    assert "Hi Ann," in html.read_text() and "[[unsubscribe_url]]" in html.read_text()
    dry = run("send", "spring", "--segment", "everyone", "--channel", "email", "--dry-run", "--format", "json")
    assert dry.exit_code == 0, dry.output
    assert orjson.loads(dry.stdout)["counts"] == {"skipped": 3, "would_send": 2}
    sent = run("send", "spring", "--segment", "everyone", "--channel", "email", "--fake", "--format", "json")
    assert sent.exit_code == 0, sent.output
    assert orjson.loads(sent.stdout)["counts"] == {"delivered": 2, "skipped": 3}
    again = run("send", "spring", "--segment", "everyone", "--channel", "email", "--fake")
    assert again.exit_code == 0 and "already_sent" in again.stdout
    listed = run("list", "--format", "json")
    assert {"spring", "birthday_coupon"} <= {row["name"] for row in orjson.loads(listed.stdout)}
    bad = run("preview", "spring", "--person", "P1", "--channel", "fax")
    assert bad.exit_code == 2 and "expected one of email" in bad.stderr


def test_the_command_line_entry_point(home: Path) -> None:
    env = {**os.environ, "OMNIWEAVE_HOME": str(home)}
    done = subprocess.run(omniweave_cmd("messages", "validate"), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "spring.yaml: ok (spring)" in done.stdout
    (home / "messages" / "broken.yaml").write_text(
        "subject: 'Cheap {{ person.first_name }}'\nbody: Hi\nsms: {body: 'It’s on'}\n"
    )
    failed = subprocess.run(
        omniweave_cmd("messages", "validate", str(home / "messages" / "broken.yaml")),
        env=env,
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 2 and "brand-forbidden-word" in failed.stdout and "sms-ucs2" in failed.stdout


def test_a_rendition_goes_out_through_the_email_channel_with_its_unsubscribe_link(rt: Runtime) -> None:
    from omniweave.channels.service import email_channel

    channel = email_channel(rt, fake=True)  # the real adapter (MIME, links) over the shipped outbox transport
    report = send(rt, SendRequest("spring", "everyone", "email"), channels={"email": channel})
    assert report.counts() == {"delivered": 2, "skipped": 3}
    outbox = channel.transport.outbox  # type: ignore[attr-defined]
    mail = next(m for m in outbox if m["To"] == "ann@example.com")
    assert mail["Subject"] == "Ann, spring is here"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "[[unsubscribe_url]]" not in text + html and "/u/" in text and "/u/" in html
    assert "Hi Ann," in text and "Hi Ann," in html


def test_a_letter_to_the_address_of_the_identify_traits_with_a_recipient_qr_link(rt: Runtime) -> None:
    from omniweave.channels.print.service import open_print_channel

    shown = preview(rt, PreviewRequest("spring", "P1", "letter"))
    assert shown.rendition.content["address"] == ["Ann", "1 Rose Lane", "London", "N1 1AA"]
    qr = shown.rendition.content["qr_url"]
    assert qr.startswith(rt.settings.channels.public_url + "/q/")
    assert [(f.rule, f.severity) for f in shown.findings] == [("insecure-link", "warning")]  # an http:// public_url
    channel = open_print_channel(rt)
    report = send(rt, SendRequest("spring", "everyone", "print"), channels={"print": channel})
    assert report.counts() == {"delivered": 1, "skipped": 4}
    assert ("skipped", "no print address") in {(o.outcome, o.reason) for o in report.outcomes}
    row = Ledger(rt.store.engine).get(send_key("spring", "everyone", "P1", "print"))
    assert row is not None and row.status == "delivered"
    letter = orjson.loads(row.content)
    assert "Hi Ann," in letter["text"] and letter["address"][1] == "1 Rose Lane"
    from omniweave.channels import links

    token = letter["qr_url"].rsplit("/q/", 1)[1]
    payload = links.verify(rt, "q", token)
    assert payload is not None and payload["pid"] == "P1" and payload["m"] == "letter"  # the scan is tied to Ann


def test_a_push_goes_to_the_persons_newest_subscription(rt: Runtime) -> None:
    from omniweave.storage.ops.tables.reach import push_subscriptions

    with rt.store.engine.begin() as conn:
        for n, at in ((1, 100.0), (2, 200.0)):
            endpoint = f"https://push.example/send/eve-{n}"
            conn.execute(
                push_subscriptions.insert().values(
                    id=f"{n:064d}", endpoint=endpoint, p256dh="k", auth="a", user_id="u5", created_at=at
                )
            )
    fake = FakeChannel("push")
    report = send(rt, SendRequest("spring", "everyone", "push"), channels={"push": fake})
    assert report.counts() == {"delivered": 1, "skipped": 4}
    ((message, key),) = fake.sent
    assert message.to == "https://push.example/send/eve-2" and key.endswith(":P5:push")
    assert message.content["title"] == "Fresh for spring" and message.content["url"] == "https://shop.example/spring"
