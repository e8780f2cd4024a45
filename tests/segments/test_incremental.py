"""Incremental segment evaluation: behaviour counts carried forward from the last evaluation give exactly
what counting everything afresh gives, through new days, late events, rewritten files and identity merges."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from omniweave.events.normalize import format_timestamp
from omniweave.runtime import Runtime
from omniweave.segments import language as S
from omniweave.segments.service import counts as SC
from omniweave.segments.service.evaluate import builtin_segments, compiler_for, evaluate_segments, member_ids
from omniweave.settings import Settings
from omniweave.storage.engine import to_arrow
from omniweave.storage.eventlog import events_to_table

EXTRA = {
    "ever_bought_big": {"performed": "Order Completed", "where": [{"property": "revenue", "gt": 40}]},
    "store_twice_60d": {
        "performed": "Order Completed",
        "at_least": 2,
        "within_days": 60,
        "where": [{"property": "channel", "eq": "store"}],
    },
    "viewed_3_in_5d": {"performed": "Product Viewed", "at_least": 3, "within_days": 5},
    "no_email_open_30d": {"not_performed": "Email Opened", "within_days": 30},
    "entered_a_segment_10d": {"performed": "Segment Entered", "within_days": 10},  # counts our own change events
}


def _segments() -> dict[str, S.Segment]:
    return {**builtin_segments(), **{k: S.parse_segment({"id": k, "where": v}) for k, v in EXTRA.items()}}


def _afresh(rt: Runtime, segments, now):
    """Members and per-key counts counted from scratch at `now` (no kept state)."""
    compiler = compiler_for(rt, segments, now=now)
    compiler.prepare(segments, None)
    kept = to_arrow(compiler.kept).sort_by(
        [("behaviour", "ascending"), ("user_id", "ascending"), ("anonymous_id", "ascending")]
    )
    return {sid: member_ids(compiler, sid) for sid in segments}, kept


def _stored(rt: Runtime, segments) -> dict[str, list[str]]:
    rows = rt.warehouse().table("segment_members").to_pyarrow().to_pylist()
    out: dict[str, list[str]] = {sid: [] for sid in segments}
    for row in rows:
        out[row["segment_id"]].append(row["person_id"])
    return {sid: sorted(v) for sid, v in out.items()}


def _kept(rt: Runtime):
    state = SC.read_state(rt.log)
    assert state is not None
    return pq.read_table(state.path).sort_by(
        [("behaviour", "ascending"), ("user_id", "ascending"), ("anonymous_id", "ascending")]
    )


def _check(rt: Runtime, segments, now, expect: str):
    members, kept = _afresh(rt, segments, now)  # before evaluating: the same snapshot of the log
    summary = evaluate_segments(rt, segments, now=now)
    assert expect in summary.counting, summary.counting
    assert _stored(rt, segments) == members
    assert _kept(rt).equals(kept.replace_schema_metadata(None).cast(SC.STATE_SCHEMA))
    return summary


@pytest.fixture
def home(tmp_path, demo_home):
    target = tmp_path / "home"
    shutil.copytree(demo_home, target)
    return target


def test_new_days_late_events_and_our_own_change_events(home):
    segments = _segments()
    rt = Runtime(Settings(home=str(home)))
    try:
        latest = rt.log.latest_event_time()
        start = latest - timedelta(days=20)
        first = _check(rt, segments, start, "is before the kept counts")  # the demo kept counts at its end
        assert first.events_written > 0  # Segment Entered events dated `start`: late for the next evaluation
        step = _check(rt, segments, start + timedelta(hours=7), "incremental")
        assert "late file" in step.counting  # the change events written after the snapshot
        # a day later, then 12 days later: the 5- and 7-day windows slid past everything they held
        _check(rt, segments, start + timedelta(days=1, hours=7), "incremental")
        final = _check(rt, segments, latest, "incremental")
        assert "counted afresh" in final.counting
        sizes = final.sizes()
        assert all(sizes[k] > 0 for k in EXTRA), sizes  # every extra segment has members: the checks prove something

        # late events: orders dated before the last evaluation, written after it
        events = rt.warehouse().table("events")
        orders = events.filter(events.event == "Order Completed").order_by("timestamp").limit(40).to_pyarrow()
        rows = []
        for i, row in enumerate(orders.to_pylist()):
            rows.append(
                {
                    "type": "track",
                    "event": "Order Completed",
                    "messageId": f"late-{i}",
                    "userId": row["user_id"],
                    "anonymousId": row["anonymous_id"],
                    "timestamp": format_timestamp(latest - timedelta(days=3, minutes=i)),
                    "properties": {"revenue": 55.0 + i, "channel": "store"},
                }
            )
        rt.log.append("events", events_to_table(rows, source="late"), batch_name="late-orders")
        later = latest + timedelta(hours=2)
        late = _check(rt, segments, later, "incremental")
        assert "late file" in late.counting
    finally:
        rt.close()


def test_a_rewritten_file_or_a_merge_between_evaluations(home):
    from omniweave.identity.service.resolve import resolve

    segments = _segments()
    rt = Runtime(Settings(home=str(home)))
    try:
        latest = rt.log.latest_event_time()
        _check(rt, segments, latest - timedelta(days=2), "full evaluation")
        # an old file rewritten (same rows, another size): the kept counts cannot be trusted
        path = rt.log.files("events")[0]
        table = pq.read_table(path)
        pq.write_table(table, path, compression="gzip")
        _check(rt, segments, latest - timedelta(days=1), "rewritten or removed")
        # two persons become one: counts are kept per event key, so the merge needs no recount
        ids = rt.warehouse().table("identities").to_pyarrow()
        users = ids.filter(pc.equal(ids.column("kind"), "user_id")).to_pylist()
        anons = ids.filter(pc.equal(ids.column("kind"), "anonymous_id")).to_pylist()
        a = users[0]
        with_user = {r["person_id"] for r in users}
        b = next(r for r in anons if r["person_id"] not in with_user)  # one user id per person: B has none
        stamp = format_timestamp(latest - timedelta(hours=12))
        link = {
            "type": "identify",
            "messageId": "merge-1",
            "userId": a["value"],
            "anonymousId": b["value"],
            "timestamp": stamp,
            "traits": {},
        }
        rt.log.append("events", events_to_table([link], source="test"), batch_name="merge")
        resolve(rt, probabilistic=False)
        ids = rt.warehouse().table("identities").to_pyarrow().to_pylist()
        owner = {(r["kind"], r["value"]): r["person_id"] for r in ids}
        assert owner[("user_id", a["value"])] == owner[("anonymous_id", b["value"])]
        _check(rt, segments, latest, "incremental")
    finally:
        rt.close()


def test_plan_reasons():
    seg = S.parse_segment({"id": "s", "where": {"performed": "Order Completed", "within_days": 7}})
    behaviour = seg.where
    t = datetime(2024, 5, 10, 12, tzinfo=UTC)
    files = {"date=2024-05-10/a.parquet": 10}
    assert SC.plan([behaviour], None, files, t).reason == "no counts kept yet"
    kept = SC.CountState(t, frozenset({SC.behaviour_key(behaviour)}), files, "x")
    assert "before" in SC.plan([behaviour], kept, files, t - timedelta(hours=1)).reason
    assert "rewritten" in SC.plan([behaviour], kept, {"date=2024-05-10/a.parquet": 11}, t).reason
    later = SC.plan(
        [behaviour],
        kept,
        {**files, "date=2024-05-10/b.parquet": 5, "date=2024-05-11/c.parquet": 5},
        t + timedelta(days=1),
    )
    assert later.carried == (behaviour,) and later.late_files == ("date=2024-05-10/b.parquet",)
    assert SC.plan([behaviour], kept, files, t + timedelta(days=7)).fresh == (behaviour,)  # slid past the window
    other = S.parse_segment({"id": "o", "where": {"performed": "Order Completed", "within_days": 8}}).where
    assert SC.plan([other], kept, files, t + timedelta(days=1)).fresh == (other,)  # a new definition
    assert SC.files_for(
        ["date=2024-05-08/x.parquet", "date=2024-05-10/y.parquet", "odd/z.parquet"], [(t - timedelta(days=1), t)]
    ) == ["date=2024-05-10/y.parquet", "odd/z.parquet"]
