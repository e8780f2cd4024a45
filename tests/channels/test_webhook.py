"""Signed webhooks against a real HTTP receiver on loopback that checks signatures with `verify_signature`."""

from __future__ import annotations

import random
import time

import orjson
import pytest

from omniweave.channels.dispatch import Dispatcher
from omniweave.channels.port import Delivered, Message, Terminal, Transient
from omniweave.channels.webhook import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, WebhookChannel, sign, verify_signature
from omniweave.channels.webhook.fake import fake_webhook_channel
from omniweave.channels.webhook.signing import signature_problem
from omniweave.errors import ConfigError, InputError
from omniweave.storage.ops.ledger import Ledger
from tests.channels.local_http import LocalHTTP, LocalRequest

SECRET = "whsec-test-1"


class Clock:
    def __init__(self) -> None:
        self.now = 2_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Receiver:
    """A receiver as a customer would write one: verify, dedupe by key, then answer (or the script's status)."""

    def __init__(self, secret: str = SECRET, script: list[tuple[int, dict[str, str]]] | None = None):
        self.secret = secret
        self.script = list(script or [])
        self.accepted: dict[str, object] = {}
        self.refused = 0

    def __call__(self, request: LocalRequest) -> tuple[int, dict[str, str], bytes]:
        if not verify_signature(self.secret, request.header(SIGNATURE_HEADER), request.body, time.time(), 300):
            self.refused += 1
            return 401, {}, b"bad signature"
        if self.script:
            status, headers = self.script.pop(0)
            return status, headers, b"not now"
        key = request.header(IDEMPOTENCY_HEADER) or ""
        self.accepted.setdefault(key, orjson.loads(request.body))
        return 200, {"X-Request-Id": f"r-{len(self.accepted)}"}, b"ok"


def hook(url: str = "", payload: object = None) -> Message:
    return Message("webhook", url or "default", {"payload": payload or {"event": "order", "id": 7}}, person_id="P1")


def test_a_signed_webhook_reaches_a_real_receiver_that_verifies_it():
    receiver = Receiver()
    with LocalHTTP(receiver) as server:
        channel = WebhookChannel(SECRET, url=server.url + "/hooks")
        outcome = channel.send(hook(payload={"event": "Order Completed", "total": 12.5, "name": "Zoë"}), "send-1")
        to_url = channel.send(hook(url=server.url + "/other"), "send-2")
    assert outcome == Delivered("r-1")
    assert isinstance(to_url, Delivered)
    assert receiver.accepted["send-1"] == {"event": "Order Completed", "total": 12.5, "name": "Zoë"}
    first, second = server.requests
    assert first.path == "/hooks" and second.path == "/other"
    assert first.header("Content-Type") == "application/json"
    assert first.header(IDEMPOTENCY_HEADER) == "send-1"
    t, v1 = (part.split("=", 1)[1] for part in (first.header(SIGNATURE_HEADER) or "").split(","))
    assert abs(int(t) - time.time()) < 60 and len(v1) == 64


def test_a_wrong_secret_is_refused_by_the_receiver_and_terminal():
    receiver = Receiver(secret="another-secret")
    with LocalHTTP(receiver) as server:
        outcome = WebhookChannel(SECRET, url=server.url).send(hook(), "k")
    assert isinstance(outcome, Terminal) and "401" in outcome.reason and not outcome.suppress
    assert receiver.refused == 1 and receiver.accepted == {}


@pytest.fixture
def ledger(runtime) -> Ledger:
    return Ledger(runtime.store.engine)


def test_503_for_a_while_then_200_delivers_once_through_the_dispatcher(ledger):
    receiver = Receiver(script=[(503, {}), (503, {}), (429, {"Retry-After": "40"})])
    clock = Clock()
    with LocalHTTP(receiver) as server:
        channel = WebhookChannel(SECRET, url=server.url)
        d = Dispatcher(ledger, {"webhook": channel}, clock=clock, rng=random.Random(2))
        assert d.send(hook(), "order-7").status == "retrying"
        d.drain(timeout=3600, sleep=clock.sleep)
        attempts = len(server.requests)
    row = ledger.get("order-7")
    assert row is not None and row.status == "delivered" and row.attempts == 4
    assert attempts == 4 and list(receiver.accepted) == ["order-7"]


def test_retry_after_of_a_429_is_honoured(ledger):
    receiver = Receiver(script=[(429, {"Retry-After": "120"})])
    clock = Clock()
    with LocalHTTP(receiver) as server:
        d = Dispatcher(ledger, {"webhook": WebhookChannel(SECRET, url=server.url)}, clock=clock, rng=random.Random(0))
        d.send(hook(), "k429")
        row = ledger.get("k429")
        assert row is not None and row.next_attempt_at is not None and row.next_attempt_at >= clock.now + 120
        clock.sleep(119)
        assert d.run_due() == []  # not yet
        clock.sleep(1)
        assert [r.status for r in d.run_due()] == ["delivered"]


def test_a_400_is_dead_until_replayed_after_the_fix_then_delivered_once(ledger):
    receiver = Receiver(script=[(400, {})])
    clock = Clock()
    with LocalHTTP(receiver) as server:
        d = Dispatcher(ledger, {"webhook": WebhookChannel(SECRET, url=server.url)}, clock=clock, rng=random.Random(0))
        assert d.send(hook(), "k400").status == "dead"
        assert d.run_due() == [] and [r.key for r in d.dead_letters()] == ["k400"]
        assert d.replay(["k400"]) == 1
        assert [r.status for r in d.run_due()] == ["delivered"]
        assert d.replay(["k400"]) == 0 and d.run_due() == []
    assert list(receiver.accepted) == ["k400"] and len(server.requests) == 2


def test_gone_receiver_is_terminal_and_suppressed_and_network_errors_are_transient():
    with LocalHTTP(lambda r: (410, {}, b"gone")) as server:
        gone = WebhookChannel(SECRET, url=server.url).send(hook(), "k")
        closed_url = server.url
    assert isinstance(gone, Terminal) and gone.suppress
    down = WebhookChannel(SECRET, url=closed_url, timeout=2).send(hook(), "k")
    assert isinstance(down, Transient) and down.reason.startswith("network")


def test_the_verifier_rejects_tampered_bodies_old_timestamps_and_garbage():
    body = b'{"event":"order","id":7}'
    now = 1_700_000_000
    header = sign(SECRET, body, now)
    assert verify_signature(SECRET, header, body, now, 300)
    assert verify_signature(SECRET, header, body, now + 300, 300)  # edge of the window
    assert not verify_signature(SECRET, header, b'{"event":"order","id":8}', now, 300)
    assert not verify_signature(SECRET, header, body, now + 301, 300)
    assert not verify_signature(SECRET, header, body, now - 301, 300)  # from the future
    assert not verify_signature("other", header, body, now, 300)
    replayed = header.replace(f"t={now}", f"t={now + 200}")  # a new timestamp on an old signature
    assert not verify_signature(SECRET, replayed, body, now + 200, 300)
    assert "replay window" in (signature_problem(SECRET, header, body, now + 999, 300) or "")
    for bad in (None, "", "garbage", "t=abc,v1=00", f"t={now}", "v1=00"):
        assert not verify_signature(SECRET, bad, body, now, 300)
    rotated = f"{sign('old-secret', body, now)},v1={header.split('v1=')[1]}"
    assert verify_signature(SECRET, rotated, body, now, 300) and verify_signature("old-secret", rotated, body, now, 300)


def test_bad_messages_and_config_are_named():
    with pytest.raises(ConfigError):
        WebhookChannel("")
    channel = WebhookChannel(SECRET)
    with pytest.raises(InputError, match="content.payload"):
        channel.send(Message("webhook", "https://x.example/h", {}), "k")
    with pytest.raises(InputError, match="http"):
        channel.send(hook(), "k")  # no URL in `to` and none configured


def test_the_shipped_fake_receiver_verifies_and_dedupes_offline():
    channel, receiver = fake_webhook_channel(script=[503])
    assert isinstance(channel.send(hook(), "k1"), Transient)
    assert isinstance(channel.send(hook(), "k1"), Delivered)
    assert isinstance(channel.send(hook(), "k1"), Delivered)  # a retry after a lost answer: dropped by key
    assert [r.idempotency_key for r in receiver.received] == ["k1"]
    forged, _ = fake_webhook_channel(secret="wrong")
    forged.client = channel.client.__class__(transport=receiver.transport())
    assert isinstance(forged.send(hook(), "k2"), Terminal) and receiver.rejected
