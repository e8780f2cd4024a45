"""Segment membership seen from above: every segment's size over time, and how segments overlap.

- `size_history(runtime, period)`: per segment and period (day, ISO week from Monday, month), the persons who
  entered, who left, and the members at the period's end. Read from the `Segment Entered` / `Segment Exited`
  events that every evaluation (and the live path) writes to the event log for each change of membership
  (segments/service/evaluate.py), so it is the history as it happened, not a re-evaluation of the past. The
  size at a period's end is the running sum of entries minus exits since the first change: it equals the
  segment's `segment_members` count as long as every change was logged (an evaluation run with
  `record_changes=False` writes none, and the members of a segment whose definition was removed are not told
  they left).
- `overlaps(runtime)`: for every pair of segments, the persons in both as last evaluated (`segment_members`);
  the diagonal is each segment's size.

The dashboard's Segments page shows both (shells/web/pages/segments.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from omniweave.errors import InputError
from omniweave.runtime import Runtime
from omniweave.segments import language as S
from omniweave.storage.engine import to_arrow

PERIODS = ("day", "week", "month")
MEMBERS_DATASET = "segment_members"


def period_start(day: date, period: str) -> date:
    """The first day of the period (ISO week from Monday) that holds `day`."""
    if period == "month":
        return day.replace(day=1)
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day


def _next_start(start: date, period: str) -> date:
    if period == "month":
        return date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return start + timedelta(days=7 if period == "week" else 1)


def check_period(period: str) -> str:
    if period not in PERIODS:
        raise InputError(f"period must be one of {', '.join(PERIODS)}, got {period!r}", field="period")
    return period


@dataclass(frozen=True)
class SizePoint:
    """One segment in one period: who entered, who left, and the members at the period's end."""

    period: date
    segment_id: str
    entered: int
    exited: int
    members: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "period": self.period.isoformat(),
            "segment_id": self.segment_id,
            "entered": self.entered,
            "exited": self.exited,
            "members": self.members,
        }


@dataclass(frozen=True)
class SizeHistory:
    """Every segment with a logged change, over every period from the first change to the last (periods without
    a change carry the size on), segments sorted by id."""

    period: str
    periods: tuple[date, ...]
    points: tuple[SizePoint, ...]

    def segments(self) -> list[str]:
        return sorted({p.segment_id for p in self.points})

    def series(self, segment_id: str) -> list[SizePoint]:
        return [p for p in self.points if p.segment_id == segment_id]

    def latest(self) -> dict[str, int]:
        """Each segment's members at the end of the last period."""
        out: dict[str, int] = {}
        for p in self.points:
            out[p.segment_id] = p.members
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"period": self.period, "points": [p.to_dict() for p in self.points]}


def daily_changes(runtime: Runtime) -> list[tuple[date, str, int, int]]:
    """(UTC day, segment id, entered, exited) of every day with a logged membership change, sorted."""
    if not runtime.log.has_data("events"):
        return []
    ev = runtime.warehouse().table("events")
    ev = ev.filter(ev.event.isin((S.SEGMENT_ENTERED, S.SEGMENT_EXITED)))
    ev = runtime.engine.dialect.with_json_fields(ev, "properties", {"segment_id": "segment_id"})
    ev = ev.filter(ev.segment_id.notnull())
    day = ev.timestamp.date()
    counted = ev.group_by([day.name("day"), ev.segment_id]).aggregate(
        entered=(ev.event == S.SEGMENT_ENTERED).sum(),
        exited=(ev.event == S.SEGMENT_EXITED).sum(),
    )
    rows = to_arrow(counted).to_pylist()
    return sorted((r["day"], str(r["segment_id"]), int(r["entered"] or 0), int(r["exited"] or 0)) for r in rows)


def size_history(runtime: Runtime, period: str = "day") -> SizeHistory:
    """Each segment's entries, exits and size at the end of every period (see the module docstring)."""
    check_period(period)
    changes = daily_changes(runtime)
    if not changes:
        return SizeHistory(period, (), ())
    per: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
    for day, segment_id, entered, exited in changes:
        cell = per[(period_start(day, period), segment_id)]
        cell[0] += entered
        cell[1] += exited
    first = min(start for start, _ in per)
    last = max(start for start, _ in per)
    periods = []
    at = first
    while at <= last:
        periods.append(at)
        at = _next_start(at, period)
    points = []
    for segment_id in sorted({s for _, s in per}):
        size = 0
        started = False
        for start in periods:
            entered, exited = per.get((start, segment_id), (0, 0))
            started = started or bool(entered or exited)
            if not started:
                continue
            size += entered - exited
            points.append(SizePoint(start, segment_id, entered, exited, size))
    return SizeHistory(period, tuple(periods), tuple(points))


@dataclass(frozen=True)
class Overlaps:
    """`both[i][j]`: the persons in segments `segment_ids[i]` and `segment_ids[j]` (the diagonal: the sizes)."""

    segment_ids: tuple[str, ...]
    both: tuple[tuple[int, ...], ...]

    def of(self, a: str, b: str) -> int:
        return self.both[self.segment_ids.index(a)][self.segment_ids.index(b)]

    def to_dict(self) -> dict[str, Any]:
        return {"segment_ids": list(self.segment_ids), "both": [list(row) for row in self.both]}


def overlaps(runtime: Runtime, segment_ids: Sequence[str] | None = None) -> Overlaps:
    """The members two segments share, for every pair of `segment_ids` (default: every segment with members), as
    last evaluated (`segment_members`). One self-join of the members on the person, counted per pair."""
    counts: dict[tuple[str, str], int] = {}
    found: set[str] = set()
    if runtime.log.has_data(MEMBERS_DATASET):
        members = runtime.warehouse().table(MEMBERS_DATASET).select("segment_id", "person_id").distinct()
        left = members.rename(a="segment_id")
        right = members.rename(b="segment_id")
        pairs = left.join(right, "person_id").group_by(["a", "b"]).aggregate(n=left.person_id.count())
        for row in to_arrow(pairs).to_pylist():
            counts[(str(row["a"]), str(row["b"]))] = int(row["n"])
            found.add(str(row["a"]))
    ids = tuple(segment_ids) if segment_ids is not None else tuple(sorted(found))
    return Overlaps(ids, tuple(tuple(counts.get((a, b), 0) for b in ids) for a in ids))
