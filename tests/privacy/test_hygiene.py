"""Collection rules at ingest, retention, and masking (issue 24 §1 and §5).

The collector applies `[[privacy.collection]]` rules to every event (a field dropped or hashed when the
event's consent says no); `omniweave privacy retention` removes events older than `[privacy]
retention_days` the way a deletion does; identifiers in messages are masked.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from omniweave.collect.emit import emit
from omniweave.collect.loader import load_all
from omniweave.errors import ConfigError
from omniweave.privacy.masking import mask, mask_email, mask_name, mask_phone, mask_text
from omniweave.privacy.service.requests import submit
from omniweave.runtime import Runtime
from omniweave.settings import CollectionRule, PrivacySettings, Settings, load_settings
from omniweave.shells.api.app import create_app
from tests.conftest import omniweave_cmd
from tests.privacy.world import basic


def test_collection_rules_drop_or_hash_fields_at_the_collector(tmp_path: Path) -> None:
    rules = (
        CollectionRule("context.ip", "analytics", "hash", "denied"),
        CollectionRule("traits.birthday", "personalisation", "drop", "not_granted"),
    )
    settings = Settings(home=str(tmp_path / "home"), privacy=PrivacySettings(collection=rules))
    assert Settings.from_dict(settings.to_dict()).privacy == settings.privacy  # how the committer receives them
    runtime = Runtime(settings)
    _, key = runtime.store.create_source("web")

    def identify(n: int, consent: dict | None) -> dict:
        event = {"type": "identify", "userId": f"u{n}", "messageId": f"m{n}", "traits": {"birthday": "1990-01-02"}}
        event["context"] = {"ip": "203.0.113.9", **({"consent": {"categoryPreferences": consent}} if consent else {})}
        return event

    batch = [
        identify(1, {"Analytics": False}),  # no to analytics: the ip hashed; personalisation not granted: dropped
        identify(2, {"Analytics": True, "Personalization": True}),  # both granted: kept
        identify(3, None),  # nothing said: ip kept (rule 1 asks a stated no), birthday dropped (rule 2 a stated yes)
    ]
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/batch", content=orjson.dumps({"batch": batch}), headers={"Authorization": basic(key)})
        assert r.status_code == 200, r.text
    load_all(runtime.store, runtime.log)
    rows = runtime.warehouse().sql("SELECT user_id, context, traits FROM events ORDER BY user_id").to_pylist()
    runtime.close()
    got = {
        r["user_id"]: (orjson.loads(r["context"]).get("ip"), orjson.loads(r["traits"]).get("birthday")) for r in rows
    }
    assert got == {
        "u1": (hashlib.sha256(b"203.0.113.9").hexdigest(), None),
        "u2": ("203.0.113.9", "1990-01-02"),
        "u3": ("203.0.113.9", None),
    }


def test_bad_privacy_settings_are_each_reported(tmp_path: Path) -> None:
    config = tmp_path / "omniweave.toml"
    config.write_text(
        "[privacy]\nretention_days = { events = -3 }\nblocklist_refresh_seconds = 600\n"
        '[[privacy.collection]]\nfield = "ip"\npurpose = "analytics"\n'
        '[[privacy.collection]]\nfield = "context.ip"\npurpose = "analytics"\naction = "encrypt"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(env={}, config_file=config)
    text = str(caught.value)
    assert "4 problems" in text
    assert "retention_days" in text and "blocklist_refresh_seconds" in text
    assert "collection[0]: field must be a dotted path" in text and "collection[1]: action must be drop or hash" in text


def _event(n: int, at: datetime) -> dict:
    return {
        "type": "track",
        "event": "Product Viewed",
        "userId": f"u{n % 3}",
        "messageId": f"r{n}",
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "context": {"traits": {"email": f"old{n}@example.com"}},
    }


def test_retention_removes_old_events_like_a_deletion(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    home = tmp_path / "home"
    (home).mkdir()
    (home / "omniweave.toml").write_text("[privacy]\nretention_days = { events = 30 }\n")
    settings = load_settings(env={}, home=str(home))
    runtime = Runtime(settings)
    # three a day, for 40 days back: 10 days (30 events) are past the 30 days kept, one day straddles the cutoff
    events = [_event(d * 3 + k, now - timedelta(days=d, hours=8 * k)) for d in range(40) for k in range(3)]
    emit(runtime.store, "test", events)
    load_all(runtime.store, runtime.log)
    cutoff = now - timedelta(days=30)
    expected_old = sum(1 for e in events if datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")) < cutoff)
    old_emails = [
        e["context"]["traits"]["email"] for e in events if e["timestamp"] < cutoff.strftime("%Y-%m-%dT%H:%M:%S")
    ]
    runtime.close()
    done = subprocess.run(
        omniweave_cmd("privacy", "retention", "--format", "json"),
        env={**os.environ, "OMNIWEAVE_HOME": str(home), "OMNIWEAVE_CONFIG": str(home / "omniweave.toml")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = orjson.loads(done.stdout)
    [receipt] = result["receipts"]
    assert (receipt["target"], receipt["count"]) == ("warehouse:events", expected_old)
    runtime = Runtime(settings)
    try:
        left = runtime.warehouse().sql("SELECT min(timestamp) AS first, count(*) AS n FROM events").to_pylist()[0]
        assert left["n"] == len(events) - expected_old
        assert left["first"] >= cutoff - timedelta(seconds=1)
        again = submit(runtime, "retention")
        assert again.receipts[0].count == 0  # nothing more to remove: safe to run daily
    finally:
        runtime.close()
    parquet = b"".join(p.read_bytes() for p in (home / "warehouse").rglob("*.parquet"))
    assert old_emails and not any(email.encode() in parquet for email in old_emails)


def test_masking_keeps_enough_to_tell_apart_and_no_more() -> None:
    assert mask_email("ann.smith@example.com") == "a***@e***.com"
    assert mask_phone("+447700900123") == "+44********23"
    assert mask_phone("07700 900123") == "0********23"
    assert mask_name("Ann Smith") == "A** S****"
    assert mask("usr-12345678") == "u*********78"
    assert mask("ab") == "**"
    text = mask_text("could not send to Ann.Smith@Example.com or +44 7700 900123 (send k1)")
    assert "Smith" not in text and "900123" not in text and "(send k1)" in text


def test_log_lines_of_any_stage_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from omniweave.privacy.masking import install_log_masking

    before = logging.getLogRecordFactory()
    try:
        install_log_masking()
        install_log_masking()  # once is enough
        with caplog.at_level(logging.INFO, logger="omniweave.channels"):
            logging.getLogger("omniweave.channels").info(
                "bounce for %s (%s) at 2026-03-01 10:00:00", "Ann@Example.com", "07700 900123"
            )
            try:
                raise ValueError("cannot reach bob@example.org")
            except ValueError:
                logging.getLogger("omniweave.channels").exception("send failed")
    finally:
        logging.setLogRecordFactory(before)
    text = caplog.text
    assert "Ann@Example.com" not in text and "900123" not in text and "bob@example.org" not in text
    assert "A***@E***.com" in text and "at 2026-03-01 10:00:00" in text and "ValueError" in text


def test_errors_of_the_lower_stages_name_identifiers_masked_with_a_reference() -> None:
    """identity (normalising, parsing, explaining, splitting) and the e-mail and SMS channels refuse with an
    error that names the identifier masked, with a `ref` (the first 8 hex of its SHA-256, lower-cased) that
    support can match — never the plain e-mail address or phone number (events/masking.py)."""

    from omniweave.channels.email.message import render_email
    from omniweave.channels.port import Message
    from omniweave.channels.sms.adapter import MessagingChannel
    from omniweave.errors import InputError
    from omniweave.identity.graph import Observation, Stitcher, normalize
    from omniweave.identity.service.operations import parse_identifier
    from omniweave.settings import EmailChannelSettings, MessagingChannelSettings

    email, phone = "Ann.Private@example.org", "+44 7700 900 123 45 67 89"
    bad_email = "ann.private@@example"

    def ref(value: str) -> str:
        return hashlib.sha256(value.strip().lower().encode()).hexdigest()[:8]

    def refusal(call: Callable[[], object]) -> str:
        with pytest.raises(InputError) as err:
            call()
        return str(err.value)

    graph = Stitcher()
    graph.add([Observation("m1", "2024-01-01T00:00:00Z", (("email", "ann.private@example.org"),))])
    graph.add([Observation("m2", "2024-01-02T00:00:00Z", (("phone", "+447700900123"),))])
    [ann] = [p for p, ids in graph.persons().items() if "ann.private@example.org" in ids.get("email", [])]
    messaging = MessagingChannelSettings(enabled=True, account_sid="AC1", from_number="+447700900000")
    sms = MessagingChannel("sms", messaging, public_url="https://shop.example", auth_token="t")
    found = {
        "normalize e-mail": (refusal(lambda: normalize("email", bad_email)), bad_email),
        "normalize phone": (refusal(lambda: normalize("phone", phone)), phone),
        "parse": (refusal(lambda: parse_identifier(f"email:{bad_email}", graph)), bad_email),
        "explain": (
            refusal(lambda: graph.explain(("email", "ann.private@example.org"), ("phone", "+447700900123"))),
            "ann.private@example.org",
        ),
        "split": (refusal(lambda: graph.split(ann, ("phone", "+447700900123"))), "+447700900123"),
        "e-mail recipient": (
            refusal(
                lambda: render_email(
                    Message("email", bad_email, {"subject": "Hi", "text": "Hello"}),
                    "k1",
                    settings=EmailChannelSettings(from_address="shop@shop.example"),
                    public_url="https://shop.example",
                    sign=lambda text, data: "sig",
                )
            ),
            bad_email,
        ),
        "e-mail content": (
            refusal(
                lambda: render_email(
                    Message("email", email, {"subject": "", "text": "Hello"}),
                    "k2",
                    settings=EmailChannelSettings(from_address="shop@shop.example"),
                    public_url="https://shop.example",
                    sign=lambda text, data: "sig",
                )
            ),
            email,
        ),
        "sms": (refusal(lambda: sms.form(Message("sms", "07700 900123x", {"body": "Hi"}))), "07700 900123x"),
    }
    for where, (message, plain) in found.items():
        assert plain.lower() not in message.lower() and "7700900123" not in message.replace(" ", ""), where
        if where not in ("explain", "split"):
            assert f"(ref {ref(plain)})" in message, (where, message)
        else:
            assert "(ref " in message and "***" in message, (where, message)
