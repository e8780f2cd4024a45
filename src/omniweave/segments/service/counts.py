"""Behaviour counts kept between segment evaluations, so that a new day of events does not re-read all history.

A behaviour condition without a sequence ("performed `Order Completed` with `channel = store` at
least 2 times in 60 days") needs, per person, the number of matching events in the window
(now - w, now]. Those counts are kept per *event key*, the (user_id, anonymous_id) pair an event
carries, not per person: persons are attributed when the segments are evaluated, from the
identities of that moment, so merges and splits between two evaluations need no recount.

With C(key) the counts kept at the previous evaluation `prev` over the event files F_old it read,
the counts at `now` over every file F_all (F_old and the files F_new written since) are

    C_now = C_prev + [F_all, (prev, now]] - [F_all, (prev - w, now - w]] + [F_new, (prev - w, prev]]

where [F, R] counts the matching events of files F with a timestamp in R. The last term counts
the late events (written after `prev`, dated before it); it reads only new files of days up to
prev's. The first two read the days between prev and now, and the days that slide out of the
window. A behaviour is counted afresh over its whole window when it is new, when the window has
slid past all it held (now - prev >= w), and always when the state cannot be trusted (no state,
`now` before `prev`, an old file rewritten or gone: `plan` says why). Sequences ("Product Viewed
then no Order Completed within 24 h") depend on the person of both events, so they are counted
afresh over their window each time (a 7-day window reads 7 days, not the log).

The state is the `segment_state` dataset: one Parquet file of (behaviour, user_id, anonymous_id, n)
whose footer holds `prev`, the behaviours it counts and the event files (with sizes) it read.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq

from omniweave.segments import language as S
from omniweave.storage.eventlog import EventLog, day_partition

STATE_DATASET = "segment_state"
STATE_FILE = "counts.parquet"
STATE_VERSION = "1"
STATE_SCHEMA = pa.schema(
    [("behaviour", pa.string()), ("user_id", pa.string()), ("anonymous_id", pa.string()), ("n", pa.int64())]
)

Range = tuple[datetime | None, datetime]
"""(lo, hi]: events with lo < timestamp <= hi; lo None means since the beginning."""


def behaviour_key(b: S.Behaviour) -> str:
    """A stable name for a behaviour condition: the same definition gives the same key in every run."""
    return hashlib.sha256(repr(b).encode()).hexdigest()[:20]


def window(b: S.Behaviour) -> timedelta | None:
    return None if b.within_days is None else timedelta(days=b.within_days)


@dataclass(frozen=True)
class CountState:
    """What the previous evaluation kept: its `now`, the behaviours it counted and the event files it read."""

    now: datetime
    behaviours: frozenset[str]
    files: Mapping[str, int]  # event file, relative to the events dataset -> size in bytes
    path: str


def event_files(log: EventLog) -> dict[str, int]:
    """The event log's files (relative to the dataset), with their sizes: the snapshot an evaluation reads."""
    root = log.dataset_path("events").rstrip("/") + "/"
    out = {}
    for path in log.files("events"):
        out[path.removeprefix(root)] = int(log.fs.size(path))
    return out


def absolute(log: EventLog, files: Iterable[str]) -> list[str]:
    return [posixpath.join(log.dataset_path("events"), f) for f in files]


def files_for(files: Iterable[str], ranges: Sequence[Range]) -> list[str]:
    """The files whose day can hold an event of one of the ranges (every file without a day partition)."""
    spans = [(None if lo is None else lo.astimezone(UTC).date(), hi.astimezone(UTC).date()) for lo, hi in ranges]
    out = []
    for f in files:
        day = day_partition(f)
        if day is None or any((lo is None or day >= lo) and day <= hi for lo, hi in spans):
            out.append(f)
    return sorted(out)


def merge_ranges(ranges: Iterable[Range]) -> list[Range]:
    """The same moments as `ranges`, with overlapping or touching ranges joined into one."""
    lowest = datetime.min.replace(tzinfo=UTC)
    out: list[list[datetime | None]] = []
    for lo, hi in sorted(ranges, key=lambda r: (r[0] or lowest, r[1])):
        last = out[-1] if out else None
        if last is not None and (lo or lowest) <= last[1]:  # type: ignore[operator]
            last[1] = max(last[1], hi)  # type: ignore[type-var]
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]  # type: ignore[misc]


def read_state(log: EventLog) -> CountState | None:
    """The kept counts' description (from the file's footer), None when there are none or they are unreadable."""
    path = posixpath.join(log.dataset_path(STATE_DATASET), STATE_FILE)
    if not log.fs.exists(path):
        return None
    try:
        with log.fs.open(path, "rb") as fh:
            meta = pq.read_schema(fh).metadata or {}
        if meta.get(b"omniweave_state_version") != STATE_VERSION.encode():
            return None
        now = datetime.fromisoformat(meta[b"now"].decode())
        behaviours = frozenset(json.loads(meta[b"behaviours"]))
        files = {str(k): int(v) for k, v in json.loads(meta[b"files"]).items()}
    except (OSError, KeyError, ValueError, pa.ArrowException):
        return None
    return CountState(now.astimezone(UTC), behaviours, files, path)


def write_state(
    log: EventLog, table: pa.Table, now: datetime, behaviours: Iterable[str], files: Mapping[str, int]
) -> str:
    """Replace the kept counts (written to a temporary file, then renamed over the old one)."""
    meta = {
        "omniweave_state_version": STATE_VERSION,
        "now": now.astimezone(UTC).isoformat(),
        "behaviours": json.dumps(sorted(behaviours)),
        "files": json.dumps(dict(sorted(files.items()))),
    }
    table = table.select(STATE_SCHEMA.names).cast(STATE_SCHEMA).replace_schema_metadata(meta)
    folder = log.dataset_path(STATE_DATASET)
    log.fs.makedirs(folder, exist_ok=True)
    final = posixpath.join(folder, STATE_FILE)
    log.replace_file(final, table)
    return final


@dataclass(frozen=True)
class Plan:
    """How each behaviour condition is counted at `now`, and why."""

    now: datetime
    fresh: tuple[S.Behaviour, ...]  # counted over the whole window
    carried: tuple[S.Behaviour, ...]  # previous counts plus what changed since
    sequences: tuple[S.Behaviour, ...]  # "then not" conditions: recounted over their window
    previous: CountState | None
    late_files: tuple[str, ...]  # new files of days up to the previous evaluation's
    reason: str  # why nothing is carried over, or "" when something is

    @property
    def incremental(self) -> bool:
        return bool(self.carried)

    def ranges(self) -> list[Range]:
        """The time ranges of events the plan reads from the whole log."""
        out: list[Range] = []
        for b in (*self.fresh, *self.sequences):
            w = window(b)
            out.append((None if w is None else self.now - w, self.now))
        prev = self.previous
        if self.carried and prev is not None:
            if prev.now < self.now:
                out.append((prev.now, self.now))
            for b in self.carried:
                w = window(b)
                if w is not None:
                    out.append((prev.now - w, self.now - w))
        return out

    def describe(self) -> str:
        if not self.carried:
            return f"full evaluation ({self.reason})" if self.reason else "full evaluation"
        late = f", {len(self.late_files)} late file(s)" if self.late_files else ""
        return (
            f"incremental since {self.previous.now:%Y-%m-%d %H:%M:%S} ({len(self.carried)} behaviour(s) carried, "
            f"{len(self.fresh)} counted afresh, {len(self.sequences)} sequence(s) recounted{late})"
            if self.previous
            else "incremental"
        )


def plan(
    behaviours: Iterable[S.Behaviour], previous: CountState | None, files: Mapping[str, int], now: datetime
) -> Plan:
    """Decide, per behaviour, whether its kept count can be carried forward to `now`."""
    countable = [b for b in behaviours if b.then_not is None]
    sequences = tuple(b for b in behaviours if b.then_not is not None)
    reason = ""
    if previous is None:
        reason = "no counts kept yet"
    elif now < previous.now:
        reason = f"now ({now:%Y-%m-%d %H:%M}) is before the kept counts' ({previous.now:%Y-%m-%d %H:%M})"
    else:
        changed = [f for f, size in previous.files.items() if files.get(f) != size]
        if changed:
            reason = f"{len(changed)} event file(s) rewritten or removed since, e.g. {changed[0]}"
    if reason or previous is None:
        return Plan(now, tuple(countable), (), sequences, None, (), reason)
    carried, fresh = [], []
    for b in countable:
        w = window(b)
        if behaviour_key(b) in previous.behaviours and (w is None or now - previous.now < w):
            carried.append(b)
        else:
            fresh.append(b)
    if not carried:
        return Plan(now, tuple(fresh), (), sequences, None, (), "no kept count is still of use")
    last_day = previous.now.date()
    late = tuple(sorted(f for f in files if f not in previous.files and (day_partition(f) or last_day) <= last_day))
    return Plan(now, tuple(fresh), tuple(carried), sequences, previous, late, "")
