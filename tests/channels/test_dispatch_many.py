"""`Dispatcher.send_many` / `attempt_many` with several workers, in pipelined steps, against the real SMS
adapter and a local Twilio-shaped server: every message reaches the provider once, every outcome is in
the ledger, results come back in key order."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from omniweave.channels.dispatch import Dispatcher
from omniweave.channels.http import PooledClient
from omniweave.channels.port import Delivered, Message, Outcome
from omniweave.channels.sms.adapter import MessagingChannel
from omniweave.channels.sms.fake import FakeTwilio
from omniweave.errors import InputError
from omniweave.settings import MessagingChannelSettings
from omniweave.storage.ops.ledger import Ledger

SID, TOKEN = "AC" + "e" * 32, "token-e"


def number(i: int) -> str:
    return f"+4477009{i:05d}"


@pytest.fixture
def world(runtime):
    fake = FakeTwilio(account_sid=SID, auth_token=TOKEN)
    with fake.serve() as api_base:
        settings = MessagingChannelSettings(
            enabled=True, api_base=api_base, account_sid=SID, from_number="+15005550006"
        )
        client = PooledClient(timeout=5, connections=3)
        channel = MessagingChannel("sms", settings, public_url="https://shop.example", client=client, auth_token=TOKEN)
        ledger = Ledger(runtime.store.engine)
        dispatcher = Dispatcher(ledger, {"sms": channel}, rng=random.Random(7))
        dispatcher.STEP = 8  # many steps for a few dozen messages: the pipeline is exercised
        yield fake, ledger, dispatcher
        client.close()


def test_a_pipelined_batch_sends_each_message_once_and_records_every_outcome(world):
    fake, ledger, dispatcher = world
    ledger.suppress("sms", number(3), "stop")
    ledger.suppress("sms", number(40), "stop")
    fake.reject(number(17), 400, 21211)
    already = dispatcher.send(Message("sms", number(5), {"body": "early"}), "k5")
    assert already.status == "delivered"
    fake.fail_next(2, 503)
    items = [(Message("sms", number(i), {"body": f"hello {i}"}, person_id=f"P{i}"), f"k{i}") for i in range(50)]
    items.append(items[10])  # the same key twice in one batch
    results = dispatcher.send_many(items, workers=3)

    assert [r.key for r in results] == [key for _, key in items]
    by_key = {r.key: r for r in results}
    assert by_key["k3"].status == by_key["k40"].status == "suppressed"
    assert by_key["k17"].status == "dead" and "21211" in (by_key["k17"].reason or "")
    assert ledger.suppression("sms", number(17)) is not None  # an invalid number is suppressed
    assert by_key["k5"].status == "delivered" and not by_key["k5"].new and by_key["k6"].new
    statuses = Counter(r.status for r in by_key.values())
    assert statuses == {"delivered": 45, "suppressed": 2, "dead": 1, "retrying": 2}
    assert ledger.counts() == dict(statuses)  # nothing left 'sending'
    tokens = Counter(m["idempotency_token"] for m in fake.messages)
    assert max(tokens.values()) == 1 and len(tokens) == 45  # 44 now + k5 before, each once
    assert {m["Body"] for m in fake.messages if m["idempotency_token"] == "k10"} == {"hello 10"}
    assert all(
        ledger.get(k).provider_id == sid for k, sid in ((m["idempotency_token"], m["sid"]) for m in fake.messages)
    )  # type: ignore[union-attr]


def test_an_unknown_key_is_refused_before_anything_is_claimed_or_sent(world):
    fake, ledger, dispatcher = world
    for i in range(20):
        dispatcher.enqueue(Message("sms", number(i), {"body": "hi"}), f"q{i}")
    with pytest.raises(InputError, match="'nope'"):
        dispatcher.attempt_many([f"q{i}" for i in range(20)] + ["nope"], workers=3)
    assert ledger.counts() == {"pending": 20} and fake.requests == 0
    results = dispatcher.attempt_many([f"q{i}" for i in range(20)], workers=3)
    assert {r.status for r in results} == {"delivered"} and len(fake.messages) == 20


class Exploding:
    """A channel whose every seventh call raises (an adapter bug): those sends are ambiguous, never resent."""

    name = "sms"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def send(self, message: Message, idempotency_key: str) -> Outcome:
        self.calls.append(idempotency_key)
        if int(idempotency_key[1:]) % 7 == 0:
            raise RuntimeError("adapter bug")
        return Delivered(f"id-{idempotency_key}")


def test_an_adapter_that_raises_in_a_worker_leaves_only_that_send_ambiguous(runtime):
    ledger, channel = Ledger(runtime.store.engine), Exploding()
    dispatcher = Dispatcher(ledger, {"sms": channel})
    dispatcher.STEP = 5
    results = dispatcher.send_many([(Message("sms", number(i), {"body": "x"}), f"e{i}") for i in range(30)], workers=4)
    ambiguous = {r.key for r in results if r.status == "ambiguous"}
    assert ambiguous == {f"e{i}" for i in range(0, 30, 7)}
    assert all("RuntimeError: adapter bug" in (r.reason or "") for r in results if r.key in ambiguous)
    assert sorted(channel.calls) == sorted(f"e{i}" for i in range(30))  # each called once
    assert dispatcher.send_many([(Message("sms", number(0), {"body": "x"}), "e0")], workers=4)[0].status == "ambiguous"
    assert channel.calls.count("e0") == 1  # not resent on its own
