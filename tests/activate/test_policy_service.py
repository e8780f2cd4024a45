"""The policy check on a real operational store (SQLite and PostgreSQL): facts read from the ledger,
suppressions and conversations, decisions recorded, the per-person lock under a race, and `messages send`."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from omniweave.activate.policy import SendIntent, Verdict
from omniweave.activate.service.policy import check_with, decisions
from omniweave.runtime import Runtime
from omniweave.settings import ClassPolicy, FrequencyCap, PolicySettings, Settings
from omniweave.storage.ops.ledger import Ledger
from omniweave.storage.ops.store import OpStore
from omniweave.storage.ops.tables import sends
from omniweave.storage.ops.tables.reach import conversations

HOUR = 3600.0
DAY = 86400.0
NOON = datetime(2026, 6, 15, 12, tzinfo=UTC).timestamp()
NO_TTL = (*PolicySettings().classes, ("promotional", ClassPolicy("reschedule", 0.0, "reschedule")))
"""The default classes with promotions that never expire (so a capped one is rescheduled, not dropped)."""
CONSENTED = {"consent_email": True, "consent_sms": True, "consent_whatsapp": True, "timezone": "UTC"}


@pytest.fixture
def store(opstore_url: str) -> Iterator[OpStore]:
    opened = OpStore(opstore_url)
    yield opened
    opened.close()


def _row(key: str, person: str, channel: str, at: float, status: str = "pending", cls: str = "promotional") -> dict:
    return {
        "key": key,
        "channel": channel,
        "to_address": f"{person}@example.com",
        "person_id": person,
        "campaign": "c",
        "message_name": "m",
        "message_class": cls,
        "content": b"{}",
        "status": status,
        "attempts": 0,
        "created_at": at,
        "updated_at": at,
    }


def _send(engine: sa.Engine, rules: PolicySettings, intent: SendIntent, now: float, *, pause: float = 0.0) -> Verdict:
    """What a sender does: check under the lock and, on send, the ledger row, in one transaction."""
    with engine.begin() as conn:
        verdict = check_with(conn, rules, intent, CONSENTED, f"{intent.person_id}@example.com", now=now)
        if verdict.outcome == "send":
            time.sleep(pause)  # widen the gap between the check and the insert: a missing lock would show
            conn.execute(sends.insert().values(**_row(intent.key, intent.person_id, intent.channel, now)))
    return verdict


def test_caps_count_the_persons_ledger_rows_and_decisions_are_recorded(store: OpStore) -> None:
    rules = PolicySettings(
        quiet_hours=None, caps=(FrequencyCap("all", 2, DAY), FrequencyCap("sms", 1, DAY)), classes=NO_TTL
    )
    engine = store.engine
    with engine.begin() as conn:  # rows that do not count: someone else's, a suppressed one, a dead one,
        # a transactional one (its class ignores caps), one older than the window
        conn.execute(sends.insert().values(**_row("other", "P2", "email", NOON - HOUR)))
        conn.execute(sends.insert().values(**_row("supp", "P1", "email", NOON - HOUR, status="suppressed")))
        conn.execute(sends.insert().values(**_row("dead", "P1", "email", NOON - HOUR, status="dead")))
        conn.execute(sends.insert().values(**_row("tx", "P1", "email", NOON - HOUR, cls="transactional")))
        conn.execute(sends.insert().values(**_row("old", "P1", "email", NOON - 2 * DAY)))
    first = _send(engine, rules, SendIntent("P1", "sms", "promotional", "k1"), NOON - 2 * HOUR)
    assert first == Verdict("send", "allowed")
    second = _send(engine, rules, SendIntent("P1", "sms", "promotional", "k2"), NOON - HOUR)
    assert second.outcome == "reschedule" and second.retry_at == NOON - 2 * HOUR + DAY
    assert second.reason == "frequency cap: 1 per 1d on sms: next allowed 2026-06-16 10:00 UTC"
    assert _send(engine, rules, SendIntent("P1", "email", "promotional", "k3"), NOON - HOUR).outcome == "send"
    third = _send(engine, rules, SendIntent("P1", "email", "promotional", "k4", journey="winback"), NOON)
    assert third == Verdict(
        "reschedule",
        "frequency cap: 2 per 1d on all channels: next allowed 2026-06-16 10:00 UTC",
        NOON - 2 * HOUR + DAY,
    )
    recorded = decisions(engine, person_id="P1")
    assert [(d.key, d.outcome) for d in recorded] == [
        ("k1", "send"),
        ("k2", "reschedule"),
        ("k3", "send"),
        ("k4", "reschedule"),
    ]
    assert recorded[-1].journey == "winback" and recorded[-1].retry_at == NOON - 2 * HOUR + DAY
    assert recorded[-1].reason == third.reason and recorded[-1].at == NOON
    assert [d.outcome for d in decisions(engine, key="k2")] == ["reschedule"]
    with engine.connect() as conn:
        locks = conn.execute(sa.text("SELECT person_id, updated_at FROM policy_persons")).all()
    assert [(p, t) for p, t in locks] == [("P1", NOON)]


def test_suppression_and_the_whatsapp_window_come_from_the_store(store: OpStore) -> None:
    rules = PolicySettings(quiet_hours=None, caps=())
    engine = store.engine
    Ledger(engine).suppress("email", "p1@example.com", "complaint", "test")
    with engine.begin() as conn:
        conn.execute(
            conversations.insert().values(channel="whatsapp", address="+447700900001", last_inbound_at=NOON - 25 * HOUR)
        )
        conn.execute(
            conversations.insert().values(channel="whatsapp", address="+447700900002", last_inbound_at=NOON - HOUR)
        )
    with engine.begin() as conn:
        # the address is matched as the ledger keys it (e-mail lower-cased)
        email = check_with(
            conn, rules, SendIntent("P1", "email", "promotional", "e"), CONSENTED, "P1@Example.com", now=NOON
        )
        sms = check_with(conn, rules, SendIntent("P1", "sms", "promotional", "s"), CONSENTED, "+447700900001", now=NOON)
        closed = check_with(
            conn,
            rules,
            SendIntent("P1", "whatsapp", "promotional", "w1", free_form=True),
            CONSENTED,
            "+447700900001",
            now=NOON,
        )
        template = check_with(
            conn, rules, SendIntent("P1", "whatsapp", "promotional", "w2"), CONSENTED, "+447700900001", now=NOON
        )
        open_ = check_with(
            conn,
            rules,
            SendIntent("P2", "whatsapp", "promotional", "w3", free_form=True),
            CONSENTED,
            "+447700900002",
            now=NOON,
        )
        refused = check_with(
            conn,
            rules,
            SendIntent("P3", "email", "promotional", "n"),
            {"consent_email": False},
            "p3@example.com",
            now=NOON,
        )
    assert email == Verdict("drop", "suppressed (complaint)")
    assert sms == Verdict("send", "allowed")  # the suppression is per channel
    assert closed == Verdict(
        "drop", "whatsapp free-form message outside the 24-hour window (the person last wrote 25h ago)"
    )
    assert template == Verdict("send", "allowed")
    assert open_ == Verdict("send", "allowed")
    assert refused == Verdict("drop", "no email consent (consent_email is false: opted out)")
    assert [(d.key, d.outcome, d.reason) for d in decisions(engine)][0] == ("e", "drop", "suppressed (complaint)")
    assert len(decisions(engine)) == 6


def test_quiet_hours_in_the_persons_zone_from_the_profile(store: OpStore) -> None:
    rules = PolicySettings(caps=())  # default quiet hours 21:00-08:00, default zone UTC
    at = datetime(2026, 6, 15, 5, tzinfo=UTC).timestamp()  # 05:00 UTC: 07:00 in Berlin, 01:00 in New York
    with store.engine.begin() as conn:
        berlin = check_with(
            conn,
            rules,
            SendIntent("P1", "email", "promotional", "b"),
            {**CONSENTED, "timezone": "Europe/Berlin"},
            "a@x.io",
            now=at,
        )
        kathmandu = check_with(
            conn,
            rules,
            SendIntent("P2", "email", "promotional", "k"),
            {**CONSENTED, "timezone": "Asia/Kathmandu"},
            "b@x.io",
            now=at,
        )
    assert berlin == Verdict(
        "reschedule", "quiet hours 21:00-08:00 in Europe/Berlin: next allowed 2026-06-15 08:00 CEST", at + HOUR
    )
    assert kathmandu == Verdict("send", "allowed")  # 10:45 there


def _race(url: str, senders: int) -> list[Verdict]:
    """`senders` threads, each with its own connection, try to send to P1 at the same moment under a cap of 1."""
    rules = PolicySettings(quiet_hours=None, caps=(FrequencyCap("all", 1, DAY),), classes=NO_TTL)
    store = OpStore(url)
    try:
        barrier = threading.Barrier(senders)
        verdicts: list[Verdict] = []
        failures: list[BaseException] = []

        def one(n: int) -> None:
            try:
                barrier.wait()
                intent = SendIntent("P1", "email", "promotional", f"j{n}:send:run", journey=f"journey{n}")
                verdicts.append(_send(store.engine, rules, intent, NOON, pause=0.05))
            except BaseException as exc:  # noqa: BLE001 - handed to the test below
                failures.append(exc)

        threads = [threading.Thread(target=one, args=(n,)) for n in range(senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(sends)).scalar() == 1
        assert len(decisions(store.engine, person_id="P1")) == senders
        return verdicts
    finally:
        store.close()


def test_two_journeys_cannot_both_pass_a_cap_for_the_same_person(opstore_url: str) -> None:
    verdicts = _race(opstore_url, 6)
    assert sorted(v.outcome for v in verdicts) == ["reschedule"] * 5 + ["send"]
    assert {v.reason for v in verdicts if v.outcome == "reschedule"} == {
        "frequency cap: 1 per 1d on all channels: next allowed 2026-06-16 12:00 UTC"
    }


# --- messages send through the policy --------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.activate.test_messages import _build

    home = tmp_path_factory.mktemp("policy-messages-home")
    _build(home)
    return home


def _runtime(built: Path, tmp_path: Path, rules: PolicySettings) -> Runtime:
    home = tmp_path / "home"
    shutil.copytree(built, home)
    return Runtime(Settings(home=str(home), policy=rules))


def test_messages_send_reports_policy_verdicts_and_records_them(built: Path, tmp_path: Path) -> None:
    from omniweave.activate.service.messages import PreviewRequest, SendRequest, preview, send, send_key
    from omniweave.channels.fake import FakeChannel

    rules = PolicySettings(caps=(FrequencyCap("all", 1, 7 * DAY),))
    rt = _runtime(built, tmp_path, rules)
    try:
        early = datetime(2026, 7, 1, 6, tzinfo=UTC).timestamp()  # 06:00 UTC: quiet hours (the people have no zone)
        dry = send(rt, SendRequest("spring", "everyone", "email", dry_run=True), now=early)
        quiet = "not now: quiet hours 21:00-08:00 in UTC: next allowed 2026-07-01 08:00 UTC"
        assert {(o.outcome, o.reason, o.count) for o in dry.outcomes} >= {("skipped", quiet, 2)}
        shown = preview(rt, PreviewRequest("spring", "P1", "email"), now=early)
        assert f"a send now would skip them: {quiet}" in shown.notes
        assert decisions(rt.store.engine) == []  # a dry run and a preview record nothing
        email = FakeChannel("email")
        night = send(rt, SendRequest("spring", "everyone", "email"), channels={"email": email}, now=early)
        assert night.counts() == {"skipped": 5} and email.sent == []
        assert ("skipped", quiet, 2) in {(o.outcome, o.reason, o.count) for o in night.outcomes}
        noon = datetime(2026, 7, 1, 12, tzinfo=UTC).timestamp()
        day = send(rt, SendRequest("spring", "everyone", "email"), channels={"email": email}, now=noon)
        assert day.counts() == {"delivered": 2, "skipped": 3} and len(email.sent) == 2
        row = Ledger(rt.store.engine).get(send_key("spring", "everyone", "P1", "email"))
        assert row is not None and row.created_at == noon and row.status == "delivered"
        sms = FakeChannel("sms")
        capped = send(rt, SendRequest("spring", "everyone", "sms"), channels={"sms": sms}, now=noon + HOUR)
        reason = (  # a promotion lives 6 h: a cap that frees in a week drops it
            "expired before it could go: frequency cap: 1 per 7d on all channels: next allowed 2026-07-08 12:00 UTC, "
            "after its ttl 6h"
        )
        assert ("skipped", reason, 2) in {(o.outcome, o.reason, o.count) for o in capped.outcomes}
        assert sms.sent == []
        ann = [(d.channel, d.outcome) for d in decisions(rt.store.engine, person_id="P1")]
        assert ann == [("email", "reschedule"), ("email", "send"), ("sms", "drop")]
        bob = decisions(rt.store.engine, person_id="P2")
        assert {d.reason for d in bob} == {"no email consent (consent_email is false: opted out)"}
    finally:
        rt.close()
