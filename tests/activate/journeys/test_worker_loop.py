"""The worker loop's own parts: on SQLite an idle worker is woken by a commit of another connection (an event
in the inbox), not by its next poll; the sender thread sends what a batch handed it, and a worker that stops
has sent everything it handed over."""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa

from omniweave.activate.journeys.model import Entry, Exit, Journey, Send, Step
from omniweave.activate.service.journeys import JourneyEngine, _Changes, publish, send_key, sink_keys, work
from omniweave.collect.emit import emit
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.storage.ops.ledger import Ledger

from .conftest import build_world


def _one_send(name: str, entry: Entry) -> Journey:
    return Journey(
        name,
        entry,
        "s",
        {
            "s": Step("s", Send("cart_reminder", "email", "x", message_class="transactional")),
            "x": Step("x", Exit("done")),
        },
    )


def test_an_idle_sqlite_worker_is_woken_by_a_commit(tmp_path: Path) -> None:
    runtime = Runtime(Settings(home=str(tmp_path / "home")))
    try:
        store = runtime.store
        changes = _Changes(store.engine, 0.05)
        changes.longest = 3600.0  # without a commit the wait would outlast the test's timeout
        before = changes.seen
        woken = threading.Event()

        def waiter() -> None:
            changes.wait()
            woken.set()

        thread = threading.Thread(target=waiter)
        thread.start()
        emit(store, "test", [{"type": "track", "event": "Ping", "userId": "u1", "messageId": "m1"}])
        thread.join(timeout=120)
        assert woken.is_set()
        assert changes.seen != before
        changes.longest = 0.0  # nothing committed since: the wait ends at its limit with the same version
        seen = changes.seen
        changes.wait()
        assert changes.seen == seen
        changes.close()
    finally:
        runtime.close()


def test_the_sender_thread_sends_every_handed_row_once(tmp_path: Path) -> None:
    runtime = Runtime(Settings(home=str(tmp_path / "home")))
    try:
        persons = build_world(runtime, 30)
        publish(runtime, _one_send("handed", Entry("api")))
        engine = JourneyEngine(runtime, sink=str(tmp_path / "sink.jsonl"))
        assert engine.enter_many("handed", persons, "k") == 30
        engine.start_sending()
        while engine.step(7):  # several batches, each handed to the thread as it commits
            engine.dispatch()
        engine.stop_sending()
        with runtime.store.engine.connect() as conn:
            ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM journey_runs WHERE journey = 'handed'"))]
        keys = {send_key("handed", "s", rid) for rid in ids}
        assert len(keys) == 30
        assert {r.key for r in Ledger(runtime.store.engine).rows("delivered")} == keys
        assert sorted(sink_keys(tmp_path / "sink.jsonl")) == sorted(keys)
        assert engine.stats.dispatched == 30
    finally:
        runtime.close()


def test_work_with_a_sender_thread_sends_each_trigger_once(tmp_path: Path) -> None:
    runtime = Runtime(Settings(home=str(tmp_path / "home")))
    try:
        build_world(runtime, 5)
        publish(runtime, _one_send("triggered", Entry("event", event="Product Added")))
        events = [
            {"type": "track", "event": "Product Added", "userId": f"u{i}", "messageId": f"pa-{i}"} for i in (1, 2, 3)
        ]
        for _ in range(3):  # replayed: one message per person
            emit(runtime.store, "test", events)
        sink = tmp_path / "sink.jsonl"
        work(runtime, until_idle=True, sink=str(sink), idle_sleep=0.01)
        keys = sink_keys(sink)
        assert len(keys) == 3 and len(set(keys)) == 3
        assert Ledger(runtime.store.engine).counts() == {"delivered": 3}
    finally:
        runtime.close()


def test_a_bulk_entry_enters_everyone_once_and_refreshes_the_planners_statistics(world: Runtime) -> None:
    publish(world, _one_send("bulk", Entry("api")))
    engine = JourneyEngine(world)
    persons = [f"X{i}" for i in range(1, 5001)]
    assert engine.enter_many("bulk", persons, "k") == 5000
    assert engine.enter_many("bulk", persons, "k") == 0  # the same call again enters nobody twice
    with world.store.engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT count(DISTINCT person_id) FROM journey_runs WHERE journey = 'bulk'"))
        assert runs.scalar_one() == 5000
        if world.store.dialect == "postgresql":  # analysed by the entry, not left to autovacuum
            analysed = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL"
                    " AND relname IN ('journey_runs', 'journey_entries', 'journey_steps')"
                )
            )
            assert analysed.scalar_one() == 3
