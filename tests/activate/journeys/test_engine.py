"""The journey engine on SQLite and PostgreSQL: triggers replayed, correlated waits, re-entry, on-error
edges, goals, publishing versions — through the real inbox, ledger, policy check and the shipped fakes."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from omniweave.activate.journeys.model import (
    Entry,
    Exit,
    Goal,
    IssueCoupon,
    Journey,
    PropertyFilter,
    ReEntry,
    Send,
    Step,
    Wait,
    WaitForEvent,
)
from omniweave.activate.service.journeys import JourneyEngine, publish, send_key
from omniweave.collect.emit import emit
from omniweave.errors import InputError
from omniweave.runtime import Runtime
from omniweave.storage.ops import journeys as Q
from omniweave.storage.ops.ledger import Ledger
from omniweave.storage.ops.tables.journeys import journey_runs, journey_waits

from .conftest import NOON, Clock

HOUR = 3600.0


ALWAYS = ReEntry("always")


def cart_journey(re_entry: ReEntry = ALWAYS) -> Journey:
    steps = {
        "ordered": WaitForEvent(HOUR, "done", "email", event="Order Completed", correlate="cart_id"),
        "email": Send("cart_reminder", "email", "done"),
        "done": Exit("done"),
    }
    return Journey(
        name="cart",
        entry=Entry("event", event="Product Added", where=(PropertyFilter("cart_id", "exists"),), correlate="cart_id"),
        start="ordered",
        steps={k: Step(k, a) for k, a in steps.items()},
        re_entry=re_entry,
        goal=Goal("Order Completed", 7 * 86400, correlate="cart_id"),
    )


def track(n: str, user: str, event: str, **props: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "messageId": n,
        "userId": user,
        "event": event,
        "properties": props,
        "timestamp": "2026-06-30T12:00:00Z",
    }


def engine(rt: Runtime, clock: Clock) -> JourneyEngine:
    return JourneyEngine(rt, fake=True, clock=clock)


def runs(rt: Runtime) -> list[dict[str, Any]]:
    with rt.store.engine.connect() as conn:
        return [dict(m) for m in conn.execute(sa.select(journey_runs).order_by(journey_runs.c.person_id)).mappings()]


def drain(e: JourneyEngine) -> None:
    while e.consume() or e.step():
        pass
    e.dispatch()


def test_a_trigger_replayed_three_times_sends_one_message(world: Runtime) -> None:
    publish(world, cart_journey())
    clock = Clock(NOON.timestamp())
    e = engine(world, clock)
    for source in ("web", "app", "replay"):  # the same messageId through three sources: three inbox rows
        emit(world.store, source, [track("m-1", "u1", "Product Added", cart_id="c1")])
        emit(world.store, source, [track("m-2", "u2", "Product Added", cart_id="c9")])
    drain(e)
    assert len(runs(world)) == 2 and {r["status"] for r in runs(world)} == {"waiting"}
    clock.at += HOUR + 1
    drain(e)
    ledger = Ledger(world.store.engine)
    rows = ledger.rows()
    assert sorted(r.person_id or "" for r in rows) == ["P1", "P2"]
    assert {r.status for r in rows} == {"delivered"}
    rid = runs(world)[0]["id"]
    assert rows[0].key in {send_key("cart", "email", r["id"]) for r in runs(world)} and rid
    for source in ("again",):  # a replay after the sends: still nothing new
        emit(world.store, source, [track("m-1", "u1", "Product Added", cart_id="c1")])
    drain(e)
    assert len(ledger.rows()) == 2 and {r["status"] for r in runs(world)} == {"exited"}
    with world.store.engine.connect() as conn:
        outcomes = [s["outcome"] for s in Q.steps_of(conn, run_id=runs(world)[0]["id"])]
    assert outcomes == ["entered", "waited", "timeout", "sent", "exited"]


def test_the_order_of_that_cart_wakes_the_wait_not_another(world: Runtime) -> None:
    publish(world, cart_journey())
    clock = Clock(NOON.timestamp())
    e = engine(world, clock)
    emit(
        world.store,
        "web",
        [track("a1", "u1", "Product Added", cart_id="c1"), track("a2", "u1", "Product Added", cart_id="c2")],
    )
    drain(e)
    with world.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(journey_waits)).scalar_one() == 2
    clock.at += 60
    emit(
        world.store,
        "web",
        [track("o2", "u1", "Order Completed", cart_id="c2"), track("o9", "u2", "Order Completed", cart_id="c1")],
    )  # another person's c1
    drain(e)
    by_corr = {r["entry_key"]: r for r in runs(world)}
    assert by_corr["a2"]["status"] == "converted"
    assert by_corr["a1"]["status"] == "waiting"
    clock.at += HOUR
    drain(e)
    rows = Ledger(world.store.engine).rows()
    assert [r.key for r in rows] == [send_key("cart", "email", by_corr["a1"]["id"])]


@pytest.mark.parametrize(
    ("re_entry", "gaps", "expected"),
    [
        (ReEntry("never"), [0, 10, 10], 1),
        (ReEntry("always"), [0, 10, 10], 3),
        (ReEntry("always", max_entries=2), [0, 10, 10], 2),
        (ReEntry("after", cooldown=100), [0, 50, 60, 10], 2),
    ],
)
def test_re_entry(world: Runtime, re_entry: ReEntry, gaps: list[float], expected: int) -> None:
    publish(world, cart_journey(re_entry))
    clock = Clock(NOON.timestamp())
    e = engine(world, clock)
    for i, gap in enumerate(gaps):
        clock.at += gap
        emit(world.store, "web", [track(f"m{i}", "u3", "Product Added", cart_id=f"c{i}")])
        e.consume()
    assert len(runs(world)) == expected


def coupon_journey(on_error: str | None) -> Journey:
    steps = {
        "coupon": Step("coupon", IssueCoupon("no_such_pool", "done"), on_error=on_error),
        "done": Step("done", Exit("done")),
        "sorry": Step("sorry", Exit("coupon failed")),
    }
    return Journey(name="coupons", entry=Entry("api"), start="coupon", steps=steps)


def test_on_error_edge_and_a_failed_run_without_one(world: Runtime) -> None:
    clock = Clock(NOON.timestamp())
    publish(world, coupon_journey("sorry"))
    e = engine(world, clock)
    assert e.enter("coupons", "P1", "k1")
    drain(e)
    first = runs(world)[0]
    assert (first["status"], first["end_reason"]) == ("exited", "coupon failed")
    result = publish(world, coupon_journey(None))
    assert result.created and result.version == 2
    e2 = engine(world, clock)
    assert e2.enter("coupons", "P2", "k1")
    drain(e2)
    second = [r for r in runs(world) if r["person_id"] == "P2"][0]
    assert second["status"] == "failed" and "no_such_pool" in second["end_reason"]
    with world.store.engine.connect() as conn:
        steps = Q.steps_of(conn, person_id="P1")
    assert [s["outcome"] for s in steps] == ["entered", "error", "exited"]


def test_publish_keeps_versions_and_moves_runs_only_by_mapping(world: Runtime) -> None:
    clock = Clock(NOON.timestamp())
    j1 = Journey(
        name="slow",
        entry=Entry("api"),
        start="w",
        steps={"w": Step("w", Wait(10 * HOUR, "x")), "x": Step("x", Exit())},
    )
    assert publish(world, j1).version == 1
    assert not publish(world, j1).created  # same definition: no new version
    e = engine(world, clock)
    assert e.enter("slow", "P1", "k") and not e.enter("slow", "P1", "k")
    drain(e)
    j2 = Journey(
        name="slow",
        entry=Entry("api"),
        start="w2",
        steps={"w2": Step("w2", Wait(HOUR, "x")), "x": Step("x", Exit("v2"))},
    )
    with pytest.raises(InputError, match="nope"):
        publish(world, j2, mapping={"w": "nope"})
    result = publish(world, j2)
    assert (result.version, result.removed_steps, result.moved) == (2, {"w": 1}, 0)
    assert runs(world)[0]["version"] == 1
    j3 = Journey(
        name="slow",
        entry=Entry("api"),
        start="w2",
        steps={"w2": Step("w2", Wait(HOUR, "x")), "x": Step("x", Exit("v3"))},
    )
    result = publish(world, j3, mapping={"w": "x"}, now=clock.at)
    assert (result.removed_steps, result.moved) == ({"w": 1}, 1)
    drain(engine(world, clock))
    assert (runs(world)[0]["status"], runs(world)[0]["end_reason"]) == ("exited", "v3")


def test_a_send_without_consent_is_skipped_with_the_policy_reason(world: Runtime) -> None:
    j = Journey(
        name="promo",
        entry=Entry("api"),
        start="s",
        steps={"s": Step("s", Send("cart_reminder", "sms", "x", fallback=("email",))), "x": Step("x", Exit())},
    )
    publish(world, j)
    e = engine(world, Clock(NOON.timestamp()))
    e.enter("promo", "P4", "k")
    drain(e)
    with world.store.engine.connect() as conn:
        steps = [(s["outcome"], s["reason"]) for s in Q.steps_of(conn, person_id="P4")]
    assert steps[1] == ("skipped", "no sms address")
    assert steps[2] == ("sent", "cart_reminder on email")
    assert [r.channel for r in Ledger(world.store.engine).rows()] == ["email"]


def test_reconcile_asks_the_provider_else_counts_ambiguous(world: Runtime, tmp_path: Any) -> None:
    """Rows a dead worker left `sending`: the sink has one (delivered), not the other (ambiguous, not resent)."""
    from omniweave.activate.service.journeys import FileSink, sink_keys
    from omniweave.channels.port import Message

    sink = tmp_path / "sink.jsonl"
    ledger = Ledger(world.store.engine)
    for key in ("j:x:s:landed", "j:x:s:lost"):
        assert ledger.insert_many(
            [
                {
                    "key": key,
                    "channel": "email",
                    "to_address": "a@example.com",
                    "message_class": "transactional",
                    "content": b"{}",
                    "person_id": "P1",
                }
            ]
        )
        assert ledger.claim(key, now=NOON.timestamp() - 600)
    FileSink(sink).send(Message("email", "a@example.com", {}), "j:x:s:landed")  # the provider got this one
    e = JourneyEngine(world, sink=str(sink), clock=Clock(NOON.timestamp() + 3600), lease=30)
    with world.store.engine.begin() as conn:  # both were claimed long ago
        conn.execute(sa.text("UPDATE sends SET updated_at = :t"), {"t": NOON.timestamp() - 600})
    assert e.reconcile() == {"delivered": 1, "ambiguous": 1}
    e.dispatch()
    assert {r.key: r.status for r in ledger.rows()} == {"j:x:s:landed": "delivered", "j:x:s:lost": "ambiguous"}
    assert sink_keys(sink) == ["j:x:s:landed"]


def test_date_and_segment_entries(world: Runtime) -> None:
    """A birthday journey enters P1 once on the day (after 09:00 local); a segment entry starts on the
    segments' `Segment Entered` event of that segment only."""
    birthday = Journey(
        name="bday",
        entry=Entry("date", trait="birthday", yearly=True, at="09:00"),
        start="x",
        steps={"x": Step("x", Wait(HOUR, "y")), "y": Step("y", Exit())},
    )
    vip = Journey(
        name="vip",
        entry=Entry("segment_entered", segment="vip"),
        start="x",
        steps={"x": Step("x", Wait(HOUR, "y")), "y": Step("y", Exit())},
    )
    publish(world, birthday)
    publish(world, vip)
    clock = Clock(NOON.replace(hour=8).timestamp())
    e = engine(world, clock)
    assert e.date_entries() == 0  # 08:00 UTC: not yet
    clock.at = NOON.timestamp()
    assert e.date_entries() == 1 and e.date_entries() == 0
    assert [(r["person_id"], r["entry_key"]) for r in runs(world)] == [("P1", "date:2026-06-30")]
    emit(
        world.store,
        "omniweave-segments-live",
        [
            track("s1", "u2", "Segment Entered", segment_id="vip", person_id="P2"),
            track("s2", "u3", "Segment Entered", segment_id="other", person_id="P3"),
        ],
    )
    e.consume()
    started = [(r["journey"], r["person_id"]) for r in runs(world)]
    assert sorted(started) == [("bday", "P1"), ("vip", "P2")]
    assert [r["entry_key"] for r in runs(world) if r["journey"] == "vip"][0].startswith("segment:vip:")


def test_run_forces_one_worker_on_sqlite_and_finishes_the_runs(world: Runtime, tmp_path: Any) -> None:
    from omniweave.activate.service.journeys import run, sink_keys

    if world.store.dialect != "sqlite":
        pytest.skip("the SQLite rule; PostgreSQL's workers are run by test_crash")
    j = Journey(
        name="now",
        entry=Entry("api"),
        start="s",
        steps={
            "s": Step("s", Send("cart_reminder", "email", "x", message_class="transactional")),
            "x": Step("x", Exit()),
        },
    )
    publish(world, j)
    assert JourneyEngine(world).enter_many("now", ["P1", "P2", "P3"], "k") == 3
    sink = tmp_path / "sink.jsonl"
    report = run(world, workers=3, until_idle=True, sink=str(sink))
    assert report.workers == 1 and "SQLite has one writer" in report.note
    assert {r["status"] for r in runs(world)} == {"exited"} and len(sink_keys(sink)) == 3
