"""The engine's batched paths and loose ends, on SQLite and PostgreSQL: the policy's `check_many`, a quiet-hours
reschedule asked again with `intended_at` = the window's opening, a mapping checked on publish, segment
conditions from `segment_members` and a wait woken by `Segment Entered`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
import sqlalchemy as sa

from omniweave.activate.journeys.definition import JourneyInvalid
from omniweave.activate.journeys.model import (
    Branch,
    BranchArm,
    Condition,
    Entry,
    Exit,
    Journey,
    Send,
    Step,
    Wait,
    WaitForEvent,
)
from omniweave.activate.policy import SendIntent
from omniweave.activate.service.journeys import JourneyEngine, publish, send_key
from omniweave.activate.service.messages import messages_folder
from omniweave.activate.service.policy import check_many, decisions
from omniweave.collect.emit import emit
from omniweave.profiles.service.build import build_profiles, write_identities
from omniweave.runtime import Runtime
from omniweave.settings import FrequencyCap, PolicySettings, Settings
from omniweave.storage.eventlog import events_to_table
from omniweave.storage.ops.ledger import Ledger
from omniweave.storage.ops.tables.journeys import journey_runs, journey_steps
from omniweave.storage.warehouse import write_dataset
from tests.segment_events import segment_event

from .conftest import NOON, Clock

HOUR = 3600.0


def journey(name: str, start: str, **actions: object) -> Journey:
    return Journey(name=name, entry=Entry("api"), start=start, steps={k: Step(k, a) for k, a in actions.items()})  # type: ignore[arg-type]


def run_of(rt: Runtime, name: str) -> dict[str, object]:
    with rt.store.engine.connect() as conn:
        return dict(conn.execute(sa.select(journey_runs).where(journey_runs.c.journey == name)).mappings().one())


def test_check_many_counts_the_batchs_own_sends_and_records_every_verdict(world: Runtime) -> None:
    rules = PolicySettings(quiet_hours=None, caps=(FrequencyCap("email", 1, 86400.0),))
    Ledger(world.store.engine).suppress("email", "p3@example.com", "bounce", "hard bounce")
    consent = {"consent_email": True, "consent_purpose_marketing": True}
    items = [
        (SendIntent("P1", "email", "promotional", "k1"), consent, "p1@example.com"),
        (SendIntent("P1", "email", "promotional", "k2"), consent, "p1@example.com"),  # the cap: k1 counts
        (SendIntent("P2", "email", "promotional", "k3"), {}, "p2@example.com"),  # no consent
        (SendIntent("P3", "email", "promotional", "k4"), consent, "p3@example.com"),
        (SendIntent("P4", "email", "promotional", "k5"), consent, "p4@example.com"),
    ]
    now = NOON.timestamp()
    with world.store.engine.begin() as conn:
        verdicts = check_many(conn, rules, items, now=now)
    assert [v.outcome for v in verdicts] == ["send", "drop", "drop", "drop", "send"]
    assert "frequency cap: 1 per 1d on email" in verdicts[1].reason  # free again in a day: past the 6 h ttl
    assert "suppressed (bounce)" in verdicts[3].reason
    recorded = {d.key: d.outcome for d in decisions(world.store.engine)}
    assert recorded == {"k1": "send", "k2": "drop", "k3": "drop", "k4": "drop", "k5": "send"}


def test_a_quiet_hours_reschedule_counts_the_ttl_from_the_window(world: Runtime) -> None:
    """A promotion (ttl 6 h) due at 23:00 UTC goes out at 09:00, ten hours later: its TTL counts from 08:00."""
    publish(world, journey("night", "s", s=Send("cart_reminder", "email", "x"), x=Exit()))
    night = datetime(2026, 6, 30, 23, 0, tzinfo=UTC).timestamp()
    clock = Clock(night)
    e = JourneyEngine(world, fake=True, clock=clock)
    assert e.enter("night", "P1", "k")
    e.step()
    run = run_of(world, "night")
    opens = datetime(2026, 7, 1, 8, 0, tzinfo=UTC).timestamp()
    assert run["wake_at"] == opens

    context = orjson.loads(run["context"])  # type: ignore[arg-type]
    assert context["intended_at"] == opens == context["retry_at"]
    clock.at = opens + HOUR
    e.step()
    rows = Ledger(world.store.engine).rows()
    assert [r.key for r in rows] == [send_key("night", "s", str(run["id"]))]
    assert run_of(world, "night")["status"] == "exited"


def test_publish_checks_the_mapping_with_the_definitions_rules(world: Runtime) -> None:
    clock = Clock(NOON.timestamp())
    publish(world, journey("slow", "w", w=Wait(10 * HOUR, "x"), x=Exit()))
    e = JourneyEngine(world, fake=True, clock=clock)
    e.enter("slow", "P1", "k")
    e.step()
    with pytest.raises(JourneyInvalid) as info:  # x is kept; y is no step of the new version: both reported
        publish(world, journey("slow", "w2", w2=Wait(HOUR, "x"), x=Exit()), mapping={"x": "w2", "w": "y"})
    paths = [p for p, _ in info.value.problems]
    assert paths == ["map.x", "map.w"]
    assert run_of(world, "slow")["version"] == 1  # nothing published, nobody moved
    moved = publish(world, journey("slow", "w2", w2=Wait(HOUR, "x"), x=Exit()), mapping={"w": "w2"}, now=clock.at)
    assert (moved.version, moved.moved) == (2, 1)


@pytest.mark.parametrize("member", [True, False])
def test_a_branch_on_segment_membership_reads_segment_members(world: Runtime, member: bool) -> None:
    if member:
        table = pa.table(
            {
                "segment_id": ["vip"],
                "person_id": ["P1"],
                "since": pa.array([NOON], pa.timestamp("us", tz="UTC")),
            }
        )
        write_dataset(world.log, "segment_members", table)
    vip = Condition(in_segments=("vip",))
    j = journey("seg", "b", b=Branch((BranchArm(vip, "in"),), "out"), **{"in": Exit("vip"), "out": Exit("other")})
    publish(world, j)
    e = JourneyEngine(world, fake=True, clock=Clock(NOON.timestamp()))
    e.enter_many("seg", ["P1", "P2"], "k")
    while e.step():  # a batch that outlasts its transaction budget leaves the rest to the next step
        pass
    with world.store.engine.connect() as conn:
        ends = dict(conn.execute(sa.select(journey_runs.c.person_id, journey_runs.c.end_reason)).all())
    assert ends == {"P1": "vip" if member else "other", "P2": "other"}


def test_a_segment_entered_event_wakes_a_segment_wait(world: Runtime) -> None:
    wait = WaitForEvent(HOUR, "joined", "late", segment="vip", segment_change="entered")
    publish(world, journey("segwait", "w", w=wait, joined=Exit("joined"), late=Exit("late")))
    clock = Clock(NOON.timestamp())
    e = JourneyEngine(world, fake=True, clock=clock)
    e.enter_many("segwait", ["P1", "P2"], "k")
    while e.step():
        pass
    event = {
        "type": "track",
        "event": "Segment Entered",
        "messageId": "seg-1",
        "userId": "u1",
        "properties": {"segment_id": "vip", "person_id": "P1"},
        "timestamp": "2026-06-30T12:00:00Z",
    }
    other = {**event, "messageId": "seg-2", "userId": "u2", "properties": {"segment_id": "churn", "person_id": "P2"}}
    emit(world.store, "segments", [event, other])
    e.consume()
    while e.step():
        pass
    clock.at += HOUR + 1
    while e.step():
        pass
    with world.store.engine.connect() as conn:
        ends = dict(conn.execute(sa.select(journey_runs.c.person_id, journey_runs.c.end_reason)).all())
    assert ends == {"P1": "joined", "P2": "late"}


def test_a_whatsapp_message_without_a_template_is_free_form(opstore_url: str, tmp_path: Path) -> None:
    """The 24-hour rule applies to a WhatsApp message written without an approved template (`chat_note`, a
    project message): the person never wrote to us, so it is skipped; a templated one (cart_reminder) goes."""
    runtime = Runtime(Settings(home=str(tmp_path / "home"), database_url=opstore_url))
    try:
        folder = messages_folder(runtime.settings)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "chat_note.yaml").write_text(
            "name: chat_note\nclass: transactional\nsubject: A note\nbody: Hello {{ person.first_name }}\n"
            "channels: [whatsapp]\nwhatsapp:\n  body: Hello {{ person.first_name }}, a free-form note\n"
        )
        traits = {"first_name": "Wa", "phone": "+4915112345678", "whatsapp_opt_in": True}
        event = segment_event(1, "2026-06-01T09:00:00Z", received_at=NOON, type="identify", user="u1", traits=traits)
        runtime.log.append("events", events_to_table([event], "test"), "world")
        write_identities(runtime, [("user_id", "u1", "P1"), ("phone", "+4915112345678", "P1")])
        build_profiles(runtime, now=NOON, traits=[])
        for name, message in (("free", "chat_note"), ("templated", "cart_reminder")):
            publish(
                runtime, journey(name, "s", s=Send(message, "whatsapp", "x", message_class="transactional"), x=Exit())
            )
        e = JourneyEngine(runtime, fake=True, clock=Clock(NOON.timestamp()))
        e.enter("free", "P1", "k")
        e.enter("templated", "P1", "k")
        while e.step():
            pass
        with runtime.store.engine.connect() as conn:
            steps = {
                (j, o): r
                for j, o, r in conn.execute(
                    sa.select(journey_steps.c.journey, journey_steps.c.outcome, journey_steps.c.reason)
                )
            }
        assert "whatsapp free-form message outside the 24-hour window" in steps[("free", "skipped")]
        assert ("free", "sent") not in steps and ("templated", "sent") in steps
        assert [r.message_name for r in Ledger(runtime.store.engine).rows()] == ["cart_reminder"]
    finally:
        runtime.close()
