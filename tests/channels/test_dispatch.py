"""The dispatcher over a real operational store: ledger first, one message per key, retries, dead letters."""

from __future__ import annotations

import random

import pytest

from omniweave.channels.dispatch import Dispatcher
from omniweave.channels.fake import FakeChannel
from omniweave.channels.port import Delivered, Message, Terminal, Transient, http_outcome, parse_retry_after
from omniweave.channels.retry import RetryPolicy
from omniweave.errors import InputError
from omniweave.storage.ops.ledger import Ledger


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def sms(to: str = "+447700900123", **kw: object) -> Message:
    return Message("sms", to, {"body": "Hello"}, person_id="P1", **kw)  # type: ignore[arg-type]


@pytest.fixture
def ledger(runtime) -> Ledger:
    return Ledger(runtime.store.engine)


def dispatcher(ledger: Ledger, channel: FakeChannel, clock: Clock, **kw: object) -> Dispatcher:
    return Dispatcher(ledger, {channel.name: channel}, clock=clock, rng=random.Random(1), **kw)  # type: ignore[arg-type]


def test_a_key_sends_once_however_often_it_is_sent(ledger):
    channel, clock = FakeChannel("sms"), Clock()
    d = dispatcher(ledger, channel, clock)
    first = d.send(sms(), "journey:cart:node1:run7")
    again = [d.send(sms(), "journey:cart:node1:run7") for _ in range(3)]
    assert first.status == "delivered" and first.new
    assert [r.new for r in again] == [False, False, False]
    assert {r.status for r in again} == {"delivered"}
    assert channel.delivered_keys() == ["journey:cart:node1:run7"]


def test_transient_failures_retry_with_back_off_then_deliver_once(ledger):
    channel = FakeChannel("sms", [Transient("HTTP 503"), Transient("HTTP 503"), Transient("HTTP 429", 30.0)])
    clock = Clock()
    d = dispatcher(ledger, channel, clock)
    assert d.send(sms(), "k1").status == "retrying"
    row = ledger.get("k1")
    assert row is not None and row.next_attempt_at is not None and row.next_attempt_at >= clock.now
    results = d.drain(timeout=3600, sleep=clock.sleep)
    assert [r.status for r in results][-1] == "delivered"
    assert channel.delivered_keys() == ["k1"] * 4
    # the 429's Retry-After (30 s) was honoured: the 4th attempt came at least 30 s after the 3rd
    # (the fake records no times, so check the ledger: 4 attempts, delivered)
    final = ledger.get("k1")
    assert final is not None and final.status == "delivered" and final.attempts == 4


def test_retry_after_is_never_shortened():
    policy = RetryPolicy(base=1.0, cap=2.0)
    rng = random.Random(3)
    assert all(policy.delay(n, 30.0, rng) >= 30.0 for n in range(1, 8))
    assert all(0 <= policy.delay(n, None, rng) <= 2.0 for n in range(1, 8))


def test_terminal_goes_to_the_dead_letters_and_replay_delivers_once(ledger):
    channel, clock = FakeChannel("sms", [Terminal("HTTP 400: bad From")]), Clock()
    d = dispatcher(ledger, channel, clock)
    assert d.send(sms(), "k2").status == "dead"
    assert d.run_due() == []  # never retried on its own
    assert [r.key for r in d.dead_letters()] == ["k2"]
    assert d.replay() == 1
    assert [r.status for r in d.run_due()] == ["delivered"]
    assert d.run_due() == [] and d.dead_letters() == []
    assert channel.delivered_keys() == ["k2", "k2"]


def test_out_of_retries_is_dead_with_the_reason(ledger):
    channel, clock = FakeChannel("sms", [Transient("HTTP 503")] * 10), Clock()
    d = dispatcher(ledger, channel, clock, policies={"promotional": RetryPolicy(base=1, cap=4, max_attempts=3)})
    d.send(sms(), "k3")
    d.drain(timeout=3600, sleep=clock.sleep)
    row = ledger.get("k3")
    assert row is not None and row.status == "dead" and row.attempts == 3
    assert row.reason == "gave up after 3 attempts: HTTP 503"


def test_a_suppressing_failure_suppresses_the_address_for_every_later_send(ledger):
    channel, clock = FakeChannel("sms", [Terminal("unsubscribed (21610)", suppress=True)]), Clock()
    d = dispatcher(ledger, channel, clock)
    d.send(sms("+44 7700 900123"), "k4")
    later = d.send(sms("+447700900123"), "k5")
    assert later.status == "suppressed" and "suppressed" in (later.reason or "")
    assert len(channel.sent) == 1


def test_an_adapter_that_raises_leaves_the_send_ambiguous_not_resent(ledger):
    class Broken(FakeChannel):
        def send(self, message, idempotency_key):  # type: ignore[no-untyped-def]
            outcome = super().send(message, idempotency_key)
            if len(self.sent) == 1:
                raise ConnectionResetError("reset after the request went out")
            return outcome

    channel, clock = Broken("sms"), Clock()
    d = dispatcher(ledger, channel, clock)
    assert d.send(sms(), "k6").status == "ambiguous"
    assert d.run_due() == [] and len(channel.sent) == 1
    assert d.replay(["k6"], include_ambiguous=True) == 1
    assert d.run_due()[0].status == "delivered"


def test_bad_input_is_refused_before_the_ledger(ledger):
    d = dispatcher(ledger, FakeChannel("sms"), Clock())
    with pytest.raises(InputError, match="no email channel is configured; configured: sms"):
        d.send(Message("email", "a@example.com", {}), "k7")
    with pytest.raises(InputError, match="unknown message class 'spam'"):
        d.send(sms(message_class="spam"), "k8")
    with pytest.raises(InputError, match="unknown channel 'fax'"):
        Message("fax", "123", {})
    with pytest.raises(InputError, match="needs a recipient"):
        Message("sms", " ", {})
    assert ledger.rows() == []


def test_http_answers_map_to_outcomes():
    assert http_outcome(201, provider_id="SM1") == Delivered("SM1")
    assert http_outcome(503, "busy") == Transient("HTTP 503: busy", None)
    assert http_outcome(429, retry_after="12") == Transient("HTTP 429", 12.0)
    assert http_outcome(410) == Terminal("HTTP 410", suppress=True)
    assert http_outcome(400, "bad") == Terminal("HTTP 400: bad", suppress=False)
    assert parse_retry_after("soon") is None and parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
