"""Near-real-time segment membership: follows the collector's inbox and re-evaluates a person as soon as one
of their events arrives, without waiting for the event log or a batch evaluation.

`omniweave segments follow` runs a `LiveSegments`. It starts from what the last `segments evaluate`
kept (segment_counts.py): the per-person counts of every behaviour condition as of that evaluation's
`now` (called `base` here), the members it wrote, the profiles' traits and the identities. Then, for
every inbox event dated after `base` that belongs to a known person and matches a behaviour
condition (segments/evaluator.py, the same semantics as the compiled queries), it recounts that
person's conditions as of the event's time — the kept count, minus the kept events that have slid out
of the window since `base`, plus the new events still in it — and re-evaluates the segments that use
the condition. A person who enters or leaves gets a `Segment Entered` / `Segment Exited` event
written to the inbox at once (source `omniweave-segments-live`, dated like the event that caused it),
so it reaches the log, and every consumer of the inbox, like any other event.

Which segments are live: those with at least one behaviour condition and no sequence ("then not
... within"); a sequence needs the absence of a later event and is settled by the batch evaluation.
What waits for the batch evaluation: persons the identities do not know yet (until `resolve`),
changes of traits (until `profiles build`), late events (dated before `base`), and anything once
the kept counts are older than `horizon` (the slid-out events are read for that long). The next
`segments evaluate` takes the live changes in the log as the members it starts from, so nothing is
announced twice.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from omniweave.errors import InputError
from omniweave.events.normalize import deterministic_message_id, format_timestamp
from omniweave.runtime import Runtime
from omniweave.segments import language as S
from omniweave.segments.evaluator import condition_holds, event_matches
from omniweave.segments.service import counts as SC
from omniweave.segments.service.evaluate import compiler_for, load_segments
from omniweave.storage.engine import to_arrow
from omniweave.storage.eventlog import events_to_table

log = logging.getLogger("omniweave.segments")

LIVE_SOURCE = "omniweave-segments-live"
DEFAULT_HORIZON = timedelta(days=2)


def traits_of(node: S.Condition, segments: Mapping[str, S.Segment]) -> set[str]:
    return {n.name for n in S.leaves(node, segments) if isinstance(n, S.Trait)}


def live_segment_ids(segments: Mapping[str, S.Segment]) -> list[str]:
    """The segments the live path keeps up to date, in evaluation order."""
    out = []
    for sid in S.evaluation_order(segments):
        found = S.behaviours_of(segments[sid].where, segments)
        if found and all(b.then_not is None for b in found):
            out.append(sid)
    return out


@dataclass(frozen=True)
class LiveChange:
    segment_id: str
    person_id: str
    entered: bool
    at: datetime
    cause: str  # the messageId of the event that caused it


@dataclass
class LiveStats:
    events: int = 0
    matched: int = 0
    unknown_person: int = 0
    before_base: int = 0
    beyond_horizon: int = 0
    changes: int = 0
    seconds: float = 0.0
    # receipt in the inbox -> change written, seconds (the latest ones: a follower runs for days)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


class LiveSegments:
    """The live path's state: counts, members, traits and identities as of the last batch evaluation, plus the
    inbox events seen since."""

    def __init__(
        self, runtime: Runtime, segments: Mapping[str, S.Segment] | None = None, *, horizon: timedelta = DEFAULT_HORIZON
    ):
        self.runtime = runtime
        self.segments = dict(segments) if segments is not None else load_segments(runtime.settings)
        self.live = live_segment_ids(self.segments)
        self.horizon = horizon
        self.position = 0
        self.read_last = 0  # inbox rows the last step read
        self.stats = LiveStats()
        self._source_id = runtime.store.ensure_source(LIVE_SOURCE)
        self._warned = False
        self._load()

    # -- the starting point --

    def _load(self) -> None:
        state = SC.read_state(self.runtime.log)
        if state is None:
            raise InputError(
                "no segment evaluation yet: run `omniweave segments evaluate` before following the inbox",
                field="segment_state",
            )
        self.base = state.now
        self.position = 0  # events after `base` may be anywhere in what the inbox still holds
        needed = {sid for sid in self.live}
        for sid in self.live:
            needed |= S.segment_references(self.segments[sid].where)
        closure = {sid: self.segments[sid] for sid in self.segments if sid in needed}
        self.behaviours: list[S.Behaviour] = sorted(
            {b for sid in self.live for b in S.behaviours_of(self.segments[sid].where, self.segments)}, key=repr
        )
        self.uses: dict[S.Behaviour, list[str]] = defaultdict(list)
        for sid in self.live:
            for b in set(S.behaviours_of(self.segments[sid].where, self.segments)):
                self.uses[b].append(sid)
        compiler = compiler_for(self.runtime, closure, now=state.now)
        compiler.prepare(closure, state)  # the kept counts, as of `base` (reads no new day)
        self.counts: dict[str, dict[S.Behaviour, int]] = compiler.person_counts(self.behaviours)
        self.leaving: dict[str, dict[S.Behaviour, list[datetime]]] = defaultdict(lambda: defaultdict(list))
        for b in self.behaviours:
            w = SC.window(b)
            if w is None:
                continue
            for person, at in compiler.occurrences(b, state.now - w, state.now - w + self.horizon):
                self.leaving[person][b].append(at)
        self.new: dict[str, dict[S.Behaviour, list[datetime]]] = defaultdict(lambda: defaultdict(list))
        wh = self.runtime.warehouse()
        names = sorted(set().union(*[traits_of(self.segments[sid].where, self.segments) for sid in self.live]))
        # every person with a profile (the batch evaluates profiles: nobody else can be a member), with the traits
        profiles = wh.table("profiles").select("person_id", *names).to_pyarrow().to_pylist()
        self.traits: dict[str, dict[str, Any]] = {row["person_id"]: row for row in profiles}
        ids = wh.table("identities")
        ids = ids.filter(ids.kind.isin(("user_id", "anonymous_id"))).select("kind", "value", "person_id")
        self.by_user: dict[str, str] = {}
        self.by_anon: dict[str, str] = {}
        self.signed: dict[str, tuple[str, str]] = {}  # person -> how a change event names them (as the batch does)
        for row in ids.to_pyarrow().to_pylist():
            kind, value, person = row["kind"], row["value"], row["person_id"]
            (self.by_user if kind == "user_id" else self.by_anon)[value] = person
            rank = (kind != "user_id", value)  # the smallest user id, else the smallest anonymous id
            if person not in self.signed or rank < (self.signed[person][0] != "user_id", self.signed[person][1]):
                self.signed[person] = (kind, value)
        self.members: dict[str, set[str]] = {sid: set() for sid in self.live}
        if self.runtime.log.has_data("segment_members"):
            table = wh.table("segment_members")
            rows = table.filter(table.segment_id.isin(self.live)).select("segment_id", "person_id")
            for row in rows.to_pyarrow().to_pylist():
                self.members[row["segment_id"]].add(row["person_id"])
        for change in live_changes_since(self.runtime, self.base):  # announced by an earlier follower
            if change.segment_id in self.members:
                (self.members[change.segment_id].add if change.entered else self.members[change.segment_id].discard)(
                    change.person_id
                )

    # -- following --

    def step(self, limit: int = 10_000) -> list[LiveChange]:
        """Read what arrived in the inbox since the last step; returns the membership changes written."""
        started = time.perf_counter()
        state = SC.read_state(self.runtime.log)
        if state is not None and state.now != self.base:  # a batch evaluation ran: start again from it
            self._load()
        rows = self.runtime.store.read(after=self.position, limit=limit)
        self.read_last = len(rows)
        if not rows:
            return []
        received = {}
        events = []
        for row in rows:
            event = orjson.loads(row.payload)
            received[event.get("messageId")] = event.get("receivedAt")
            events.append(event)
        flat = events_to_table(events, source="").select(
            ["message_id", "type", "event", "channel", "timestamp", "properties", "user_id", "anonymous_id"]
        )
        changes: list[LiveChange] = []
        for event in flat.to_pylist():
            changes.extend(self._apply(event))
        self.position = rows[-1].seq
        if changes:
            self._write(changes)
            now = time.time()
            for c in changes:
                at = received.get(c.cause)
                if at:
                    self.stats.latencies.append(now - datetime.fromisoformat(at).timestamp())
        self.stats.seconds += time.perf_counter() - started
        return changes

    def _apply(self, event: dict[str, Any]) -> list[LiveChange]:
        self.stats.events += 1
        at = event["timestamp"]
        if at is None or at <= self.base:
            self.stats.before_base += 1
            return []
        at = at.astimezone(UTC)
        person = self.by_user.get(event["user_id"] or "") or self.by_anon.get(event["anonymous_id"] or "")
        matched = [b for b in self.behaviours if event_matches(b.event, b.filters, event)]
        if not matched:
            return []
        if person is None:
            self.stats.unknown_person += 1
            return []
        self.stats.matched += 1
        for b in matched:
            self.new[person][b].append(at)
        if at > self.base + self.horizon:
            self.stats.beyond_horizon += 1
            if not self._warned:
                log.warning(
                    "segment counts kept at %s are older than %s: run `omniweave segments evaluate`",
                    self.base,
                    self.horizon,
                )
                self._warned = True
            return []
        traits = self.traits.get(person)
        if traits is None:  # not in the profiles yet (the batch makes nobody a member without a profile)
            self.stats.unknown_person += 1
            return []
        counts = {b: self._count(person, b, at) for b in self.behaviours}
        out = []
        for sid in sorted({sid for b in matched for sid in self.uses[b]}, key=self.live.index):
            holds = condition_holds(self.segments[sid].where, traits, counts, at, self.segments, person)
            was = person in self.members[sid]
            if holds != was:
                (self.members[sid].add if holds else self.members[sid].discard)(person)
                out.append(LiveChange(sid, person, holds, at, event["message_id"]))
        return out

    def _count(self, person: str, b: S.Behaviour, at: datetime) -> int:
        n = self.counts.get(person, {}).get(b, 0)
        w = SC.window(b)
        new = self.new.get(person, {}).get(b, ())
        if w is None:
            return n + sum(1 for t in new if t <= at)
        n -= sum(1 for t in self.leaving.get(person, {}).get(b, ()) if t <= at - w)
        return n + sum(1 for t in new if at - w < t <= at)

    def _write(self, changes: Iterable[LiveChange]) -> None:
        """The changes as events in the inbox (a retry or a replay writes the same messageIds: ignored)."""
        rows = []
        received = time.time()
        for c in changes:
            name = S.SEGMENT_ENTERED if c.entered else S.SEGMENT_EXITED
            message_id = deterministic_message_id(LIVE_SOURCE, name, c.segment_id, c.person_id, c.cause)
            kind, value = self.signed[c.person_id]
            stamp = format_timestamp(c.at)
            event = {
                "type": "track",
                "event": name,
                "messageId": message_id,
                "userId": value if kind == "user_id" else None,
                "anonymousId": value if kind == "anonymous_id" else None,
                "timestamp": stamp,
                "receivedAt": format_timestamp(datetime.fromtimestamp(received, UTC)),
                "properties": {
                    "segment_id": c.segment_id,
                    "segment_name": self.segments[c.segment_id].name,
                    "person_id": c.person_id,
                    "channel": "omniweave",
                    "cause": c.cause,
                },
                "context": {"library": {"name": LIVE_SOURCE}},
            }
            rows.append((self._source_id, message_id, received, orjson.dumps(event)))
        self.runtime.store.append(rows)
        self.stats.changes += len(rows)

    def follow(self, interval: float = 0.5, stop: Any = None, on_changes: Any = None) -> None:
        """Step every `interval` seconds until `stop()` is true (or forever)."""
        while stop is None or not stop():
            changes = self.step()
            if changes and on_changes is not None:
                on_changes(changes)
            if not self.read_last:
                time.sleep(interval)


def live_changes_since(runtime: Runtime, since: datetime) -> list[LiveChange]:
    """The live path's membership changes in the event log dated after `since`, oldest first (read from the day
    partitions from `since` on only: a view of every file of the log cost a second or more per evaluation)."""
    files = runtime.log.files_since("events", since)
    if not files:
        return []
    ev = runtime.warehouse().files_table("events", files)
    ev = ev.filter(
        ev.event.isin((S.SEGMENT_ENTERED, S.SEGMENT_EXITED))
        & ev.message_id.startswith(LIVE_SOURCE + "-")
        & (ev.timestamp > since)
        & (ev.date >= since.date())
    )
    table = to_arrow(ev.select("event", "timestamp", "properties", "message_id").order_by(["timestamp", "message_id"]))
    out = []
    for row in table.to_pylist():
        props = orjson.loads(row["properties"] or "{}")
        out.append(
            LiveChange(
                props.get("segment_id", ""),
                props.get("person_id", ""),
                row["event"] == S.SEGMENT_ENTERED,
                row["timestamp"],
                props.get("cause", ""),
            )
        )
    return out
