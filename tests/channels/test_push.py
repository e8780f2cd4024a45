"""Web push with VAPID against a real push service on loopback: headers verified, payload decrypted, 410 drops."""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Iterator

import http_ece
import orjson
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from omniweave.channels.dispatch import Dispatcher
from omniweave.channels.port import Delivered, Message, Terminal, Transient
from omniweave.channels.push import WebPushChannel, generate_vapid_keys, verified_claims
from omniweave.channels.push.fake import FakeBrowser, FakePushService
from omniweave.channels.push.service import (
    SubscribeRequest,
    open_push_channel,
    push_messages,
    subscribe,
    unsubscribe,
    vapid_public_key,
)
from omniweave.channels.push.vapid import load_vapid
from omniweave.errors import ConfigError, InputError
from omniweave.runtime import Runtime
from omniweave.settings import ChannelsSettings, PushChannelSettings, Settings
from omniweave.storage.ops.ledger import Ledger
from omniweave.storage.ops.push import PushSubscriptions
from tests.channels.local_http import LocalHTTP, LocalRequest

KEYS = generate_vapid_keys()
SUBJECT = "mailto:ops@shop.example"


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def independent_vapid_check(header: str, public_key: str, origin: str) -> dict:
    """Verify `vapid t=JWT, k=KEY` with cryptography only (not our code, not py-vapid)."""
    scheme, _, rest = header.partition(" ")
    assert scheme == "vapid"
    fields = dict(part.strip().split("=", 1) for part in rest.split(","))
    assert fields["k"] == public_key
    head, claims, signature = fields["t"].split(".")
    assert orjson.loads(unb64(head)) == {"typ": "JWT", "alg": "ES256"}
    raw = unb64(signature)
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64(public_key))
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key.verify(der, f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))  # raises InvalidSignature
    decoded = orjson.loads(unb64(claims))
    assert decoded["aud"] == origin and decoded["sub"] == SUBJECT
    assert time.time() < decoded["exp"] <= time.time() + 24 * 3600
    return decoded


class PushService:
    """A push service on loopback: 201 with a Location, or 410 for endpoints that unsubscribed, or scripted."""

    def __init__(self) -> None:
        self.gone: set[str] = set()
        self.script: list[tuple[int, dict[str, str]]] = []

    def __call__(self, request: LocalRequest) -> tuple[int, dict[str, str], bytes]:
        if self.script:
            status, headers = self.script.pop(0)
            return status, headers, b""
        if request.path in self.gone:
            return 410, {}, b"expired"
        return 201, {"Location": f"{request.path}/m/{len(request.body)}"}, b""


@pytest.fixture
def world(tmp_path, monkeypatch) -> Iterator[tuple[Runtime, LocalHTTP, PushService]]:
    monkeypatch.setenv("OMNIWEAVE_VAPID_PRIVATE_KEY", KEYS.private_key)
    push = PushChannelSettings(enabled=True, vapid_subject=SUBJECT)
    runtime = Runtime(Settings(home=str(tmp_path / "home"), channels=ChannelsSettings(push=push)))
    service = PushService()
    with LocalHTTP(service) as server:
        yield runtime, server, service
    runtime.close()


def _subscribe(runtime: Runtime, browser: FakeBrowser, user: str = "u-1") -> str:
    sub = browser.subscription()
    subscribe(runtime, SubscribeRequest.from_json({**sub, "userId": user}))
    return str(sub["endpoint"])


def _events(runtime: Runtime) -> list[dict]:
    return [orjson.loads(row.payload) for row in runtime.store.read(0)]


def note(endpoint: str, **content: object) -> Message:
    body = {"title": "Your basket misses you", "body": "20% off today", "url": "https://shop.example/b", **content}
    return Message("push", endpoint, body, person_id="P1", campaign="spring", message_name="basket")


def test_a_notification_arrives_encrypted_with_a_verifying_vapid_header(world):
    runtime, server, _ = world
    browser = FakeBrowser(server.url + "/push/v2/abc123")
    endpoint = _subscribe(runtime, browser)
    outcome = open_push_channel(runtime).send(note(endpoint, icon="https://shop.example/i.png"), "k1")
    assert isinstance(outcome, Delivered) and outcome.provider_id.startswith("/push/v2/abc123/m/")
    (request,) = server.requests
    assert request.method == "POST" and request.path == "/push/v2/abc123"
    assert request.header("Content-Encoding") == "aes128gcm"
    assert int(request.header("TTL") or 0) > 0 and request.header("Urgency") == "normal"
    claims = independent_vapid_check(request.header("Authorization") or "", KEYS.public_key, server.url)
    assert verified_claims(request.header("Authorization"), KEYS.public_key) == claims
    plain = http_ece.decrypt(
        request.body, private_key=browser.private_key, auth_secret=browser.auth_secret, version="aes128gcm"
    )
    assert orjson.loads(plain) == {
        "title": "Your basket misses you",
        "body": "20% off today",
        "url": "https://shop.example/b",
        "icon": "https://shop.example/i.png",
    }
    assert b"basket" not in request.body  # encrypted on the wire
    other = FakeBrowser(server.url + "/push/v2/other")
    with pytest.raises(Exception):  # noqa: B017 - only the subscriber's key decrypts it
        other.decrypt(request.body)


def test_a_forged_vapid_header_does_not_verify():
    signer = load_vapid(KEYS.private_key)
    header = signer.sign({"aud": "https://push.example", "sub": SUBJECT})["Authorization"]
    assert verified_claims(header, KEYS.public_key) is not None
    other = generate_vapid_keys()
    assert verified_claims(header, other.public_key) is None  # k is not ours
    t = header.split("t=")[1].split(",")[0]
    tampered = header.replace(t, t[:-4] + ("AAAA" if not t.endswith("AAAA") else "BBBB"))
    assert verified_claims(tampered) is None
    with pytest.raises(InvalidSignature):
        independent_vapid_check(tampered, KEYS.public_key, "https://push.example")


def test_410_drops_the_subscription_suppresses_the_endpoint_and_reports_it(world):
    runtime, server, service = world
    endpoint = _subscribe(runtime, FakeBrowser(server.url + "/push/gone-1"), user="u-9")
    keep = _subscribe(runtime, FakeBrowser(server.url + "/push/alive"), user="u-9")
    service.gone.add("/push/gone-1")
    ledger = Ledger(runtime.store.engine)
    d = Dispatcher(ledger, {"push": open_push_channel(runtime)}, rng=random.Random(1))
    first = d.send(note(endpoint), "gone-k1")
    assert first.status == "dead" and "410" in (first.reason or "")
    subs = PushSubscriptions(runtime.store.engine)
    assert subs.get(endpoint) is None and subs.get(keep) is not None
    assert ledger.suppression("push", endpoint) is not None
    again = d.send(note(endpoint), "gone-k2")
    assert again.status == "suppressed" and len(server.requests) == 1  # never tried again
    dropped = [e for e in _events(runtime) if e["event"] == "Push Subscription Dropped"]
    assert len(dropped) == 1
    assert dropped[0]["userId"] == "u-9" and dropped[0]["properties"]["channel"] == "push"
    assert "410" in dropped[0]["properties"]["reason"]
    assert [e["event"] for e in _events(runtime)].count("Push Subscribed") == 2


def test_429_and_503_are_transient_honouring_retry_after(world):
    runtime, server, service = world
    endpoint = _subscribe(runtime, FakeBrowser(server.url + "/push/busy"))
    service.script = [(429, {"Retry-After": "30"}), (503, {})]
    channel = open_push_channel(runtime)
    assert channel.send(note(endpoint), "k") == Transient("HTTP 429", 30.0)
    assert isinstance(channel.send(note(endpoint), "k"), Transient)
    assert isinstance(channel.send(note(endpoint), "k"), Delivered)
    assert PushSubscriptions(runtime.store.engine).get(endpoint) is not None


def test_unknown_endpoint_and_unfit_content(world):
    runtime, server, _ = world
    channel = open_push_channel(runtime)
    unknown = channel.send(note(server.url + "/push/never-subscribed"), "k")
    assert isinstance(unknown, Terminal) and unknown.suppress and server.requests == []
    endpoint = _subscribe(runtime, FakeBrowser(server.url + "/push/x"))
    with pytest.raises(InputError, match="content.title"):
        channel.send(Message("push", endpoint, {"body": "no title"}), "k")
    with pytest.raises(InputError, match="at most"):
        channel.send(note(endpoint, body="x" * 5000), "k")


def test_subscriptions_are_checked_saved_once_and_removed(world):
    runtime, server, _ = world
    browser = FakeBrowser(server.url + "/push/s1")
    sub = browser.subscription()
    first = subscribe(runtime, SubscribeRequest.from_json({**sub, "anonymousId": "anon-1"}))
    again = subscribe(runtime, SubscribeRequest.from_json({**sub, "userId": "u-2", "anonymousId": "anon-1"}))
    assert first.new and not again.new and first.id == again.id
    stored = PushSubscriptions(runtime.store.engine).of(user_id="u-2")
    assert [s.endpoint for s in stored] == [sub["endpoint"]]
    bad = [
        ({**sub, "keys": {"p256dh": "abc", "auth": sub["keys"]["auth"]}, "userId": "u"}, "keys.p256dh"),
        ({**sub, "keys": {"p256dh": sub["keys"]["p256dh"], "auth": "!!"}, "userId": "u"}, "keys.auth"),
        ({**sub, "endpoint": "ftp://x/y", "userId": "u"}, "endpoint"),
        ({**sub, "endpoint": 7, "userId": "u"}, "endpoint"),
        ({"endpoint": sub["endpoint"], "userId": "u"}, "keys"),
        (sub, "userId"),
        ([], None),
    ]
    for body, field in bad:
        with pytest.raises(InputError) as info:
            subscribe(runtime, SubscribeRequest.from_json(body))
        assert info.value.field == field, (body, info.value)
    assert unsubscribe(runtime, sub["endpoint"]) and not unsubscribe(runtime, sub["endpoint"])
    assert PushSubscriptions(runtime.store.engine).count() == 0


def test_vapid_keys_come_from_the_environment_only(world, monkeypatch):
    runtime, _, _ = world
    assert vapid_public_key(runtime) == KEYS.public_key
    pem = load_vapid(KEYS.private_key).private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    monkeypatch.setenv("OMNIWEAVE_VAPID_PRIVATE_KEY", pem.decode())
    assert vapid_public_key(runtime) == KEYS.public_key
    monkeypatch.setenv("OMNIWEAVE_VAPID_PRIVATE_KEY", "not-a-key")
    with pytest.raises(ConfigError, match="P-256"):
        vapid_public_key(runtime)
    monkeypatch.delenv("OMNIWEAVE_VAPID_PRIVATE_KEY")
    with pytest.raises(ConfigError, match="OMNIWEAVE_VAPID_PRIVATE_KEY"):
        open_push_channel(runtime)


def test_the_shipped_fake_push_service_works_offline():
    browser = FakeBrowser("https://push.example.net/wpush/v2/xyz")
    service = FakePushService(KEYS.public_key)
    subs = {browser.endpoint: browser.subscription()}
    channel = WebPushChannel(
        KEYS.private_key, SUBJECT, subs.get, on_gone=lambda e, r: subs.pop(e), transport=service.transport()
    )
    assert isinstance(channel.send(note(browser.endpoint), "k1"), Delivered)
    (got,) = service.received
    assert orjson.loads(browser.decrypt(got.body))["title"] == "Your basket misses you"
    assert got.claims["aud"] == "https://push.example.net"
    service.gone.add(browser.endpoint)
    gone = channel.send(note(browser.endpoint), "k2")
    assert isinstance(gone, Terminal) and gone.suppress and subs == {}
    impostor = WebPushChannel(
        generate_vapid_keys().private_key, SUBJECT, lambda e: browser.subscription(), transport=service.transport()
    )
    assert isinstance(impostor.send(note(browser.endpoint), "k3"), Terminal) and service.refused


# --- the API ------------------------------------------------------------------------------------


def test_the_api_serves_the_key_and_takes_subscriptions_with_a_write_key(world, monkeypatch):
    from fastapi.testclient import TestClient

    from omniweave.shells.api.app import create_app

    runtime, server, _ = world
    _, write_key = runtime.store.create_source("web")
    app = create_app(runtime.settings)
    auth = {"Authorization": f"Bearer {write_key}"}
    sub = FakeBrowser(server.url + "/push/api-1").subscription()
    with TestClient(app) as client:
        assert client.get("/v1/push/vapid-public-key").json() == {"publicKey": KEYS.public_key}
        assert client.post("/v1/push/subscriptions", json={**sub, "userId": "u-7"}).status_code == 401
        bad_key = {"Authorization": "Bearer not-a-key"}
        assert client.post("/v1/push/subscriptions", json={**sub, "userId": "u-7"}, headers=bad_key).status_code == 401
        created = client.post(
            "/v1/push/subscriptions", json={**sub, "userId": "u-7", "expirationTime": None}, headers=auth
        )
        assert created.status_code == 201 and created.json()["new"] is True and created.json()["userId"] == "u-7"
        again = client.post("/v1/push/subscriptions", json={**sub, "userId": "u-7"}, headers=auth)
        assert again.status_code == 200 and again.json()["new"] is False
        broken = {**sub, "keys": {**sub["keys"], "p256dh": "AAAA"}, "userId": "u-7"}
        refused = client.post("/v1/push/subscriptions", json=broken, headers=auth)
        assert refused.status_code == 400 and refused.json()["errors"][0]["field"] == "keys.p256dh"
        nobody = client.post("/v1/push/subscriptions", json=sub, headers=auth)
        assert nobody.status_code == 400 and nobody.json()["errors"][0]["field"] == "userId"
        schema = client.get("/openapi.json").json()["paths"]
        assert {"get"} <= set(schema["/v1/push/vapid-public-key"]) and {"post", "delete"} <= set(
            schema["/v1/push/subscriptions"]
        )
        gone = client.delete("/v1/push/subscriptions", params={"endpoint": sub["endpoint"]}, headers=auth)
        assert gone.status_code == 200 and gone.json() == {"deleted": True}
        assert (
            client.delete("/v1/push/subscriptions", params={"endpoint": sub["endpoint"]}, headers=auth).status_code
            == 404
        )
        monkeypatch.delenv("OMNIWEAVE_VAPID_PRIVATE_KEY")
        missing = client.get("/v1/push/vapid-public-key")
        assert missing.status_code == 404 and "vapid-keys" in missing.json()["message"]
    names = [e["event"] for e in _events(runtime)]
    assert names.count("Push Subscribed") == 1 and names.count("Push Subscription Dropped") == 1


def test_a_person_gets_one_message_per_subscribed_browser(world):
    runtime, server, _ = world
    phone = _subscribe(runtime, FakeBrowser(server.url + "/push/phone"), user="u-5")
    laptop = _subscribe(runtime, FakeBrowser(server.url + "/push/laptop"), user="u-5")
    _subscribe(runtime, FakeBrowser(server.url + "/push/someone-else"), user="u-6")
    messages = push_messages(runtime, {"title": "Hi"}, user_id="u-5", person_id="P5", campaign="c")
    assert sorted(m.to for m in messages) == sorted([phone, laptop])
    assert {(m.person_id, m.campaign, m.channel) for m in messages} == {("P5", "c", "push")}
    assert push_messages(runtime, {"title": "Hi"}) == []
    channel = open_push_channel(runtime)
    assert all(isinstance(channel.send(m, f"k-{i}"), Delivered) for i, m in enumerate(messages))
