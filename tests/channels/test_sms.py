"""SMS and WhatsApp against a real local HTTP server in Twilio's shape, and the webhooks on the real app.

The provider is the package's FakeTwilio served by its own keep-alive HTTP/1.1 server on 127.0.0.1 (a real socket,
real HTTP); the adapter is the real one; the ledger, suppressions, conversations and inbox are a real store.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import parse_qsl

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from omniweave.channels.dispatch import Dispatcher
from omniweave.channels.port import Delivered, Message, Terminal, Transient
from omniweave.channels.sms.adapter import OUTSIDE_WINDOW, AmbiguousSend, MessagingChannel
from omniweave.channels.sms.fake import FakeTwilio
from omniweave.channels.sms.service import messaging_channel, send_feedback
from omniweave.channels.sms.signature import twilio_signature
from omniweave.runtime import Runtime
from omniweave.settings import ChannelsSettings, MessagingChannelSettings, Settings
from omniweave.shells.api.app import create_app
from omniweave.storage.ops.conversations import Conversations
from omniweave.storage.ops.ledger import Ledger

TOKEN = "test-auth-token-123"
SID = "AC" + "1" * 32
PUBLIC = "https://shop.example"
ALICE = "+447700900123"
BOB = "+447700900456"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def provider() -> Iterator[tuple[FakeTwilio, str]]:
    fake = FakeTwilio(account_sid=SID, auth_token=TOKEN)
    with fake.serve() as api_base:
        yield fake, api_base


def _settings(tmp_path, api_base: str) -> Settings:
    messaging = MessagingChannelSettings(enabled=True, api_base=api_base, account_sid=SID, from_number="+447700900000")
    channels = ChannelsSettings(
        public_url=PUBLIC, sms=messaging, whatsapp=replace(messaging, help_text="Shop help: 0800 000")
    )
    return Settings(home=str(tmp_path / "home"), channels=channels)


@pytest.fixture
def world(tmp_path, provider, monkeypatch) -> Iterator[tuple[Runtime, FakeTwilio, Clock]]:
    monkeypatch.setenv("OMNIWEAVE_TWILIO_AUTH_TOKEN", TOKEN)
    fake, api_base = provider
    runtime = Runtime(_settings(tmp_path, api_base))
    yield runtime, fake, Clock()
    runtime.close()


def _dispatcher(runtime: Runtime, clock: Clock, *channels: str) -> Dispatcher:
    # the adapter's own default client (channels.http.PooledClient, urllib3) over the real socket
    adapters = {name: messaging_channel(runtime, name, clock=clock) for name in channels or ("sms",)}
    return Dispatcher(
        Ledger(runtime.store.engine),
        adapters,
        clock=clock,
        rng=random.Random(7),
        on_outcome=send_feedback(runtime, clock),
    )


def _events(runtime: Runtime) -> list[dict]:
    return [orjson.loads(row.payload) for row in runtime.store.read(0)]


def sms(to: str = ALICE, body: str = "Spring sale: 20% off today", **kw) -> Message:
    return Message("sms", to, {"body": body}, person_id="P1", campaign="spring", message_name="sale", **kw)


# --- sending ------------------------------------------------------------------------------------


def test_a_message_arrives_with_the_right_form_auth_and_idempotency_token(world):
    runtime, fake, clock = world
    result = _dispatcher(runtime, clock).send(sms(), "journey:spring:1:P1")
    assert result.status == "delivered" and result.provider_id and result.provider_id.startswith("SM")
    [message] = fake.messages
    assert message["To"] == ALICE and message["From"] == "+447700900000"
    assert message["Body"] == "Spring sale: 20% off today"
    assert message["StatusCallback"] == f"{PUBLIC}/v1/channels/sms/status"
    assert message["idempotency_token"] == "journey:spring:1:P1"
    [sent] = [e for e in _events(runtime) if e["event"] == "SMS Sent"]
    assert sent["properties"]["send_key"] == "journey:spring:1:P1" and sent["properties"]["campaign"] == "spring"
    assert sent["context"]["traits"]["phone"] == ALICE


def test_basic_auth_is_checked_by_the_provider(world):
    runtime, fake, clock = world
    settings = runtime.settings.channels.sms
    wrong = MessagingChannel("sms", settings, public_url=PUBLIC, auth_token="wrong", client=httpx.Client())
    outcome = wrong.send(sms(), "k-auth")
    assert isinstance(outcome, Terminal) and "20003" in outcome.reason and not outcome.suppress
    assert fake.messages == []


def test_503_for_a_while_then_201_delivers_every_message_exactly_once(world):
    runtime, fake, clock = world
    fake.fail_next(12, 503)
    d = _dispatcher(runtime, clock)
    keys = [f"k{i}" for i in range(5)]
    for i, key in enumerate(keys):
        d.send(sms(f"+4477009001{i:02d}"), key)
    d.drain(timeout=6 * 3600, sleep=clock.sleep)
    assert sorted(m["idempotency_token"] for m in fake.messages) == keys
    assert {Ledger(runtime.store.engine).get(k).status for k in keys} == {"delivered"}
    assert fake.requests == 12 + 5


def test_429_retry_after_is_honoured(world):
    runtime, fake, clock = world
    fake.clock = clock
    fake.fail_next(1, 429, 20429, retry_after=7)
    d = _dispatcher(runtime, clock)
    first = d.send(sms(), "k429")
    assert first.status == "retrying" and "20429" in (first.reason or "")
    row = Ledger(runtime.store.engine).get("k429")
    assert row.next_attempt_at >= clock.now + 7
    d.drain(timeout=3600, sleep=clock.sleep)
    assert fake.request_times[1] - fake.request_times[0] >= 7
    assert [m["idempotency_token"] for m in fake.messages] == ["k429"]


def test_invalid_number_is_terminal_suppressed_and_a_bad_sender_replays_once_after_the_fix(world):
    runtime, fake, clock = world
    ledger = Ledger(runtime.store.engine)
    fake.reject(BOB, 400, 21211)
    d = _dispatcher(runtime, clock)
    dead = d.send(sms(BOB), "k-bad-number")
    assert dead.status == "dead" and "21211" in (dead.reason or "")
    assert ledger.suppression("sms", BOB) == "bounce"
    assert d.run_due() == []  # never retried on its own
    # a 400 that a fix cures (the sender): dead letter, then replay delivers once
    fake.fail_next(1, 400, 21606)
    failed = d.send(sms(), "k-bad-from")
    assert failed.status == "dead" and "21606" in (failed.reason or "")
    assert [r.key for r in d.dead_letters()] == ["k-bad-number", "k-bad-from"]
    assert [e["event"] for e in _events(runtime)].count("SMS Failed") == 2
    assert d.replay(["k-bad-from"]) == 1
    d.drain(timeout=60, sleep=clock.sleep)
    assert [m["idempotency_token"] for m in fake.messages] == ["k-bad-from"]
    assert d.replay(["k-bad-from"]) == 0  # delivered: nothing to replay
    # the number fixed at the provider and lifted from the list: replay delivers once too
    fake.accept(BOB)
    ledger.unsuppress("sms", BOB)
    d.replay(["k-bad-number"])
    d.drain(timeout=60, sleep=clock.sleep)
    assert sorted(m["idempotency_token"] for m in fake.messages) == ["k-bad-from", "k-bad-number"]


def test_provider_error_codes_and_network_failures():
    fake = FakeTwilio(account_sid=SID, auth_token=TOKEN)
    settings = MessagingChannelSettings(
        enabled=True, api_base="https://api.example/2010-04-01", account_sid=SID, from_number="+1555"
    )
    channel = MessagingChannel(
        "sms", settings, public_url=PUBLIC, auth_token=TOKEN, client=httpx.Client(transport=fake.transport())
    )
    fake.fail_next(1, 400, 21610)
    assert channel.send(sms(), "a") == Terminal(
        "Twilio error 21610: the recipient has unsubscribed (replied STOP) (scripted failure 400)", suppress=True
    )
    fake.fail_next(1, 400, 21614)
    assert isinstance(out := channel.send(sms(), "b"), Terminal) and out.suppress
    fake.fail_next(1, 503, 30001)
    assert isinstance(channel.send(sms(), "c"), Transient)
    fake.fail_next(1, 400, 21611)
    assert channel.send(sms(), "d") == Transient(
        "Twilio error 21611: the 'From' number's queue is full (scripted failure 400)", 600.0
    )
    fake.fail_next(1, 418, None)
    assert isinstance(channel.send(sms(), "e"), Terminal)
    assert isinstance(channel.send(sms(), "f"), Delivered)
    assert channel.send(sms(), "f") == Delivered(fake.messages[-1]["sid"])  # same token, same sid
    assert len(fake.messages) == 1

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    down = MessagingChannel(
        "sms", settings, public_url=PUBLIC, auth_token=TOKEN, client=httpx.Client(transport=httpx.MockTransport(refuse))
    )
    assert isinstance(down.send(sms(), "g"), Transient)
    slow = MessagingChannel(
        "sms", settings, public_url=PUBLIC, auth_token=TOKEN, client=httpx.Client(transport=httpx.MockTransport(hang))
    )
    with pytest.raises(AmbiguousSend):
        slow.send(sms(), "h")


# --- WhatsApp -----------------------------------------------------------------------------------


def test_whatsapp_free_form_only_inside_24_hours_templates_always(world):
    runtime, fake, clock = world
    d = _dispatcher(runtime, clock, "whatsapp")
    text = Message("whatsapp", ALICE, {"body": "Your order is ready"}, person_id="P1")
    refused = d.send(text, "wa-1")
    assert refused.status == "dead" and refused.reason == OUTSIDE_WINDOW
    assert fake.requests == 0  # refused without calling the provider
    template = Message("whatsapp", ALICE, {"template": "HX" + "a" * 32, "parameters": ["Alice", "12:00"]})
    assert d.send(template, "wa-2").status == "delivered"
    [sent] = fake.messages
    assert sent["To"] == f"whatsapp:{ALICE}" and sent["From"] == "whatsapp:+447700900000"
    assert sent["ContentSid"] == "HX" + "a" * 32 and orjson.loads(sent["ContentVariables"]) == {
        "1": "Alice",
        "2": "12:00",
    }
    assert "Body" not in sent
    Conversations(runtime.store.engine).record_inbound("whatsapp", ALICE, clock.now - 3600, None)
    assert d.send(text, "wa-3").status == "delivered"
    assert fake.messages[-1]["Body"] == "Your order is ready"
    clock.now += 24 * 3600  # the window closed again
    assert d.send(replace(text, content={"body": "Still there?"}), "wa-4").reason == OUTSIDE_WINDOW


# --- webhooks -----------------------------------------------------------------------------------


@pytest.fixture
def api(world) -> Iterator[tuple[TestClient, Runtime, FakeTwilio, Clock]]:
    runtime, fake, clock = world
    app = create_app(runtime.settings)
    yield TestClient(app, base_url=PUBLIC), app.state.runtime, fake, clock
    app.state.runtime.close()


def _post(client: TestClient, url: str, form: dict[str, str], signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return client.post(url.removeprefix(PUBLIC), content=httpx.QueryParams(form).__str__(), headers=headers)


def test_status_callback_signature_bad_is_403_and_changes_nothing_good_is_an_event(api):
    client, runtime, fake, clock = api
    d = _dispatcher(runtime, clock)
    sid = d.send(sms(), "k-status").provider_id
    before = _events(runtime)
    url, form, signature = fake.status_callback(sid, "undelivered", 21610)
    forged = base64.b64encode(b"x" * 20).decode()
    for bad in (None, forged, twilio_signature("other-token", url, form.items())):
        answer = _post(client, url, form, bad)
        assert answer.status_code == 403, answer.text
        assert answer.json()["errors"][0]["field"] == "X-Twilio-Signature"
    tampered = {**form, "MessageStatus": "delivered"}
    assert _post(client, url, tampered, signature).status_code == 403
    assert _events(runtime) == before
    assert Ledger(runtime.store.engine).suppressions() == []
    good = _post(client, url, form, signature)
    assert good.status_code == 200
    assert good.json() == {
        "matched": True,
        "send_key": "k-status",
        "status": "undelivered",
        "event": "SMS Undelivered",
        "suppressed": True,
    }
    [event] = [e for e in _events(runtime) if e["event"] == "SMS Undelivered"]
    assert event["properties"]["error_code"] == 21610 and event["properties"]["send_key"] == "k-status"
    assert Ledger(runtime.store.engine).suppression("sms", ALICE) == "stop"
    url, form, signature = fake.status_callback(sid, "delivered")
    assert _post(client, url, form, signature).json()["event"] == "SMS Delivered"
    assert _post(client, url, form, signature).status_code == 200  # the provider retries: still one event
    assert [e["event"] for e in _events(runtime)].count("SMS Delivered") == 1


def test_stop_then_start_and_help(api):
    client, runtime, fake, clock = api
    ledger = Ledger(runtime.store.engine)
    url = f"{PUBLIC}/v1/channels/sms/inbound"
    form, signature = fake.inbound(url, BOB, "+447700900000", "  stop ")
    forged_body = {**form, "Body": "START"}
    assert _post(client, url, forged_body, signature).status_code == 403
    answer = _post(client, url, form, signature)
    assert answer.status_code == 200 and "<Response/>" in answer.text
    assert ledger.suppression("sms", BOB) == "stop"
    assert ledger.suppression("whatsapp", BOB) is None  # each channel keeps its own list
    d = _dispatcher(runtime, clock)
    assert d.send(sms(BOB), "after-stop").status == "suppressed"
    form, signature = fake.inbound(url, BOB, "+447700900000", "Start")
    assert _post(client, url, form, signature).status_code == 200
    assert ledger.suppression("sms", BOB) is None
    form, signature = fake.inbound(url, BOB, "+447700900000", "help")
    helped = _post(client, url, form, signature)
    assert "<Message>Reply STOP to unsubscribe" in helped.text and helped.headers["content-type"].startswith(
        "application/xml"
    )
    form, signature = fake.inbound(url, BOB, "+447700900000", "stop please")  # not a keyword
    _post(client, url, form, signature)
    assert ledger.suppression("sms", BOB) is None
    names = [
        (e["event"], e["properties"].get("keyword")) for e in _events(runtime) if e["properties"]["address"] == BOB
    ]
    assert names == [
        ("Unsubscribed", "STOP"),
        ("Subscribed", "START"),
        ("SMS Received", "HELP"),
        ("SMS Received", None),
    ]
    assert Conversations(runtime.store.engine).last_keyword("sms", BOB) is None


def test_start_does_not_lift_a_bounce(api):
    client, runtime, fake, clock = api
    ledger = Ledger(runtime.store.engine)
    ledger.suppress("sms", BOB, "bounce", "Twilio error 30005")
    url = f"{PUBLIC}/v1/channels/sms/inbound"
    form, signature = fake.inbound(url, BOB, "+447700900000", "START")
    _post(client, url, form, signature)
    assert ledger.suppression("sms", BOB) == "bounce"


def test_a_whatsapp_inbound_opens_the_window_and_help_uses_the_settings(api):
    client, runtime, fake, clock = api
    url = f"{PUBLIC}/v1/channels/whatsapp/inbound"
    form, signature = fake.inbound(url, f"whatsapp:{ALICE}", "whatsapp:+447700900000", "INFO")
    answer = _post(client, url, form, signature)
    assert "<Message>Shop help: 0800 000</Message>" in answer.text
    assert Conversations(runtime.store.engine).last_inbound_at("whatsapp", ALICE) is not None
    clock.now = Conversations(runtime.store.engine).last_inbound_at("whatsapp", ALICE) + 60
    d = _dispatcher(runtime, clock, "whatsapp")
    assert d.send(Message("whatsapp", ALICE, {"body": "Hi!"}), "wa-in").status == "delivered"


def test_unknown_channel_and_unsigned_garbage_are_4xx(api):
    client, *_ = api
    assert client.post("/v1/channels/fax/status", content=b"x=1").status_code == 400
    assert client.post("/v1/channels/sms/inbound", content=b"\xff\x00=&&").status_code == 403
    spec = client.get("/openapi.json").json()["paths"]
    assert {"/v1/channels/{channel}/status", "/v1/channels/{channel}/inbound"} <= set(spec)


def test_signature_matches_twilios_published_example():
    # Twilio's documented example (docs "Webhooks security"): auth token 12345, this URL and form.
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    assert twilio_signature("12345", url, params.items()) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_parse_of_sent_form_round_trips():
    fake = FakeTwilio()
    status, _, body = fake.handle("POST", f"/2010-04-01/Accounts/{fake.account_sid}/Messages.json", {}, b"To=%2B1")
    assert status == 401 and orjson.loads(body)["code"] == 20003
    assert dict(parse_qsl("To=%2B447700900123")) == {"To": ALICE}


def test_offline_channels_send_through_the_shipped_fake(runtime):
    from omniweave.channels.service import dispatcher_for, open_channels

    channels = open_channels(runtime, fake=True)
    assert {"sms", "whatsapp"} <= set(channels)
    d = dispatcher_for(runtime, channels)
    assert d.send(sms(), "offline-1").status == "delivered"
    assert d.send(Message("whatsapp", ALICE, {"template": "HXwelcome"}), "offline-2").status == "delivered"
    assert [e["event"] for e in _events(runtime)] == ["SMS Sent", "WhatsApp Sent"]
