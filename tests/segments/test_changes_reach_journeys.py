"""A batch `segments evaluate` hands its membership changes to the journey engine through the inbox (the live
path always did): a `segment_entered` journey enters exactly the persons who entered, and the loader does not
write the changes, already in the log, a second time."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from omniweave.activate.journeys.model import Entry, Exit, Journey, Step, Wait
from omniweave.activate.service.journeys import CONSUMER, JourneyEngine, publish
from omniweave.collect.loader import load_all
from omniweave.runtime import Runtime
from omniweave.segments import language as S
from omniweave.segments.service.evaluate import evaluate_segments
from omniweave.settings import Settings
from omniweave.storage.ops.tables.journeys import journey_runs


def _logged_changes(rt: Runtime, name: str, segment: str) -> list[str]:
    ev = rt.warehouse().table("events")
    rows = ev.filter((ev.event == name) & ev.properties.contains(f'"segment_id":"{segment}"'))
    return sorted(str(m) for m in rows.select("message_id").to_pyarrow().column("message_id").to_pylist())


def test_batch_segment_changes_enter_journeys_once_and_are_logged_once(tmp_path: Path, demo_home: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(demo_home, home)
    rt = Runtime(Settings(home=str(home)))
    try:
        journey = Journey(
            name="big_spenders",
            entry=Entry("segment_entered", segment="big"),
            start="x",
            steps={"x": Step("x", Wait(3600.0, "y")), "y": Step("y", Exit())},
        )
        publish(rt, journey)
        load_all(rt.store, rt.log)
        rt.store.commit_position(CONSUMER, rt.store.max_seq())  # the engine starts from here
        big = {"big": S.parse_segment({"id": "big", "where": {"trait": "total_revenue", "gte": 100}})}
        first = evaluate_segments(rt, big)
        entered = first.results[0].entered
        assert entered > 0 and first.events_written == entered
        engine = JourneyEngine(rt, fake=True, clock=lambda: first.now.timestamp())
        while engine.consume(1000):
            pass
        with rt.store.engine.connect() as conn:
            runs = conn.execute(
                sa.select(journey_runs.c.person_id, journey_runs.c.entry_key).where(
                    journey_runs.c.journey == "big_spenders"
                )
            ).all()
        members = rt.warehouse().table("segment_members").to_pyarrow().to_pylist()
        assert sorted(str(p) for p, _ in runs) == sorted(m["person_id"] for m in members if m["segment_id"] == "big")
        assert len(runs) == entered and all(str(k).startswith("segment:big:") for _, k in runs)
        # the log has each change once, before and after the loader passed the inbox's copies
        logged = _logged_changes(rt, S.SEGMENT_ENTERED, "big")
        assert len(logged) == len(set(logged)) == entered
        load_all(rt.store, rt.log)
        assert _logged_changes(rt, S.SEGMENT_ENTERED, "big") == logged
        # leaving is announced the same way; the entered journey is not entered again
        bigger = {"big": S.parse_segment({"id": "big", "where": {"trait": "total_revenue", "gte": 300}})}
        second = evaluate_segments(rt, bigger, now=first.now + timedelta(hours=1))
        exited = second.results[0].exited
        assert exited > 0
        while engine.consume(1000):
            pass
        load_all(rt.store, rt.log)
        assert len(_logged_changes(rt, S.SEGMENT_EXITED, "big")) == exited
        with rt.store.engine.connect() as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(journey_runs).where(journey_runs.c.journey == "big_spenders")
            ).scalar_one()
        assert total == entered
    finally:
        rt.close()
