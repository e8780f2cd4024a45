"""Segment sizes over time (from the Segment Entered / Exited events) and overlaps (from segment_members), each
against an independent count: the changes replayed person by person, and Python sets of the members."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest

from omniweave.errors import InputError
from omniweave.runtime import Runtime
from omniweave.segments import language as S
from omniweave.segments.service.evaluate import MEMBERS_SCHEMA, SEGMENT_SOURCE, change_event
from omniweave.segments.service.sizes import overlaps, period_start, size_history
from omniweave.storage.eventlog import events_to_table
from omniweave.storage.warehouse import write_dataset

SEGMENTS = {
    sid: S.parse_segment({"id": sid, "where": {"trait": "orders", "gte": n}})
    for n, sid in enumerate(("alpha", "beta", "gamma"), start=1)
}
START = datetime(2026, 1, 27, 6, 0, tzinfo=UTC)  # a Tuesday: weeks and months are cut inside the run


def _evaluations(seed: int) -> list[tuple[datetime, list[tuple[str, str, str]]]]:
    """Twenty daily evaluations (some days skipped) of random memberships: the changes each one logs."""
    rng = random.Random(seed)
    members: dict[str, set[str]] = {sid: set() for sid in SEGMENTS}
    out = []
    for day in range(40):
        if rng.random() < 0.5:
            continue
        now = START + timedelta(days=day, hours=rng.randrange(12))
        changes = []
        for sid in SEGMENTS:
            new = {f"P{i}" for i in range(30) if rng.random() < 0.3 + 0.01 * day}
            changes += [(S.SEGMENT_ENTERED, sid, p) for p in sorted(new - members[sid])]
            changes += [(S.SEGMENT_EXITED, sid, p) for p in sorted(members[sid] - new)]
            members[sid] = new
        out.append((now, changes))
    return out


def _log(runtime: Runtime, evaluations: list[tuple[datetime, list[tuple[str, str, str]]]]) -> None:
    for n, (now, changes) in enumerate(evaluations):
        events = [change_event(name, SEGMENTS[sid], p, f"u-{p}", None, now) for name, sid, p in changes]
        if events:
            runtime.log.append("events", events_to_table(events, source=SEGMENT_SOURCE), batch_name=f"eval-{n}")
    other = [  # not a membership change: never counted
        {
            "type": "track",
            "event": "Order Completed",
            "messageId": "o1",
            "userId": "u-P1",
            "timestamp": START.isoformat(),
            "properties": {"segment_id": "alpha"},
        }
    ]
    runtime.log.append("events", events_to_table(other, source="shop"), batch_name="shop")


def _replayed(
    evaluations: list[tuple[datetime, list[tuple[str, str, str]]]], period: str
) -> dict[tuple[date, str], int]:
    """The members of each segment at the end of each period with a change, by replaying every change."""
    members: dict[str, set[str]] = defaultdict(set)
    at_end: dict[tuple[date, str], int] = {}
    for now, changes in evaluations:
        for name, sid, p in changes:
            (members[sid].add if name == S.SEGMENT_ENTERED else members[sid].discard)(p)
        for sid in SEGMENTS:
            at_end[(period_start(now.date(), period), sid)] = len(members[sid])
    return at_end


@pytest.mark.parametrize("period", ["day", "week", "month"])
def test_sizes_over_time_are_the_changes_replayed(runtime: Runtime, period: str) -> None:
    evaluations = _evaluations(seed=3)
    _log(runtime, evaluations)
    history = size_history(runtime, period)
    assert history.segments() == sorted(SEGMENTS)
    expected = _replayed(evaluations, period)
    got = {(p.period, p.segment_id): p.members for p in history.points}
    for key, size in expected.items():
        assert got[key] == size, key
    # every period from the first change to the last, each segment carried through the quiet ones
    assert history.periods[0] == period_start(evaluations[0][0].date(), period)
    assert history.periods[-1] == period_start(evaluations[-1][0].date(), period)
    for sid in SEGMENTS:
        series = history.series(sid)
        assert [p.period for p in series] == list(history.periods)
        entered = sum(
            1 for _, changes in evaluations for name, s, _ in changes if s == sid and name == S.SEGMENT_ENTERED
        )
        exited = sum(1 for _, changes in evaluations for name, s, _ in changes if s == sid and name == S.SEGMENT_EXITED)
        assert (sum(p.entered for p in series), sum(p.exited for p in series)) == (entered, exited)
        assert series[-1].members == entered - exited == history.latest()[sid]


def test_sizes_over_time_without_changes_and_a_bad_period(runtime: Runtime) -> None:
    assert size_history(runtime, "week").points == ()
    with pytest.raises(InputError) as raised:
        size_history(runtime, "fortnight")
    assert raised.value.field == "period"


def test_overlaps_count_the_persons_in_both(runtime: Runtime) -> None:
    rng = random.Random(11)
    members = {
        sid: {f"P{i}" for i in range(200) if rng.random() < share}
        for sid, share in (("alpha", 0.5), ("beta", 0.2), ("gamma", 0.05), ("empty", 0.0))
    }
    rows = [(sid, p) for sid, persons in members.items() for p in sorted(persons)]
    table = pa.table(
        {
            "segment_id": [s for s, _ in rows],
            "person_id": [p for _, p in rows],
            "since": [START] * len(rows),
        },
        schema=MEMBERS_SCHEMA,
    )
    write_dataset(runtime.log, "segment_members", table)
    asked = ["alpha", "beta", "empty", "gamma", "unknown"]
    found = overlaps(runtime, asked)
    assert found.segment_ids == tuple(asked)
    for a in asked:
        for b in asked:
            assert found.of(a, b) == len(members.get(a, set()) & members.get(b, set())), (a, b)
    assert overlaps(runtime).segment_ids == ("alpha", "beta", "gamma")  # default: the segments with members


def test_overlaps_before_any_evaluation(runtime: Runtime) -> None:
    assert overlaps(runtime, ["alpha"]).both == ((0,),)
