"""Segments: definitions loaded from files, compiled to Ibis, evaluated into memberships and change events.

A segment's condition tree (segments/language.py, docs/segments.md) compiles to one Ibis expression over
the `profiles` table joined with one count per behaviour condition (from the events of each person),
so the same definition runs on DuckDB and on Spark. `evaluate_segments` computes every segment's
members, writes the `segment_members` dataset and appends a `Segment Entered` / `Segment Exited`
event per change to the event log, so reports can count them, and to the inbox (marked as logged: the loader
passes over them), so journeys can react to them.
"""

from __future__ import annotations

import hashlib
import math
import posixpath
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from omniweave.errors import InputError
from omniweave.identity.persons import with_person
from omniweave.runtime import Runtime
from omniweave.segments import language as S
from omniweave.segments.service import counts as SC
from omniweave.settings import Settings
from omniweave.storage.engine import Dialect, dialect_of, to_arrow
from omniweave.storage.guard import guarded
from omniweave.storage.warehouse import write_dataset

MEMBERS_SCHEMA = pa.schema(
    [("segment_id", pa.string()), ("person_id", pa.string()), ("since", pa.timestamp("us", tz="UTC"))]
)
TYPE_EVENTS = {"Page Viewed": "page", "Screen Viewed": "screen", "Identified": "identify"}
"""Event names that match a call type rather than a track event's name (a page call's `event` is the page's name)."""
SEGMENT_SOURCE = "omniweave-segments"


# --- loading -------------------------------------------------------------------------------------


def read_segment_file(path: Path) -> S.Segment:
    """One segment file (YAML or TOML); its id defaults to the file name without extension."""
    text = path.read_text(encoding="utf-8")
    try:
        document: Any = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:  # the parser's own message says where
        raise InputError(f"cannot parse segment file {path}: {exc}", field=str(path)) from None
    return S.parse_segment(document, source=str(path), default_id=path.stem)


def builtin_segments() -> dict[str, S.Segment]:
    """The ready-made library shipped with omniweave (`omniweave/segments/library/*.yaml`)."""
    out = {}
    folder = resources.files("omniweave.segments") / "library"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".yaml", ".yml", ".toml")):
            seg = read_segment_file(Path(str(entry)))
            out[seg.id] = seg
    return out


def segments_folder(settings: Settings | str) -> Path:
    """The project's segment files: the settings' `[segments] folder`, else `segments/` beside the config file
    they came from, else in the home folder (a bare home path: its `segments/`)."""
    return settings.segments_folder if isinstance(settings, Settings) else Path(settings) / "segments"


def load_segments(
    settings: Settings | str, *, builtin: bool = True, folder: Path | None = None
) -> dict[str, S.Segment]:
    """The built-in library (unless `builtin` is false) and the project's segment files, which win on the same id.

    Every file is read before raising, so that one error lists every broken file."""
    segments = builtin_segments() if builtin else {}
    folder = folder or segments_folder(settings)
    problems: list[str] = []
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.suffix in (".yaml", ".yml", ".toml"):
                try:
                    seg = read_segment_file(path)
                except InputError as exc:
                    problems.append(str(exc))
                    continue
                segments[seg.id] = seg
    if problems:
        raise InputError("\n".join(problems), field="segments")
    S.evaluation_order(segments)  # unknown references and cycles
    return segments


# --- compiling ---------------------------------------------------------------------------------


class Compiler:
    """Compiles condition trees over `profiles` and the person-attributed `events`, as of `now`, for the
    engine of `profiles` (DuckDB or Spark)."""

    def __init__(
        self,
        profiles: ir.Table,
        events: ir.Table | Callable[[], ir.Table],
        identities: ir.Table,
        now: datetime,
        segments: Mapping[str, S.Segment],
        *,
        files: Mapping[str, int] | None = None,
        read_files: Callable[[list[str]], ir.Table] | None = None,
        read_kept: Callable[[], ir.Table] | None = None,
    ):
        self.profiles = profiles
        self._raw_events = events  # or how to get it: binding the whole log costs time `prepare` does not need
        self.identities = identities
        self.now = now
        self.d = dialect_of(profiles)
        self.segments = segments
        self.files = files  # the snapshot of event files (relative path -> size) `prepare` reads
        self.read_files = read_files
        self.read_kept = read_kept
        self.plan: SC.Plan | None = None
        self.kept: ir.Table | None = None  # per event key counts at `now`, after `prepare`
        self._events: ir.Table | None = None
        self._wide: ir.Table | None = None
        self._property_columns: dict[str, str] = {}
        self.files_read = 0  # event files `prepare` read
        self._columns: dict[S.Behaviour, str] = {}

    @property
    def raw_events(self) -> ir.Table:
        if callable(self._raw_events):
            self._raw_events = self._raw_events()
        return self._raw_events

    @property
    def events(self) -> ir.Table:
        if self._events is None:
            ev = self.raw_events
            ev = ev.filter(ev.timestamp <= self._now())
            self._events = with_person(ev, self.identities)
        return self._events

    def prepare(self, segment_ids: Iterable[str], previous: SC.CountState | None = None) -> SC.Plan:
        """Count every behaviour condition of these segments once, for all of them: one table with a column
        per condition and a row per person, joined to the profiles by `members`.

        Non-sequence conditions are counted per event key (see segment_counts.py) and carried over from
        `previous` where the plan allows, reading only the events of the days that changed; the new
        counts are `self.kept` (to keep for the next evaluation). Only the events of the conditions'
        names and of the day partitions their windows need are read."""
        behaviours: dict[S.Behaviour, str] = {}
        for sid in segment_ids:
            self._collect(self.segments[sid].where, behaviours)
        files = self.files if self.files is not None else {}
        the_plan = SC.plan(behaviours, previous, files, self.now)
        self.plan = the_plan
        if not behaviours:
            return the_plan
        reading = SC.files_for(files, the_plan.ranges())
        self.files_read = len(reading) + len(the_plan.late_files)
        ev = self._slice(self._read(reading), behaviours, the_plan.ranges())
        # the properties the filters read, extracted once; the JSON documents themselves are not kept
        # (only for the events of the conditions that filter on them)
        wanted: dict[str, set[str]] = {}
        for b in behaviours:
            for name, filters in (
                (b.event, b.filters),
                *(((b.then_not.event, b.then_not.filters),) if b.then_not else ()),
            ):
                for f in filters:
                    if f.key != "channel":
                        wanted.setdefault(f.key, set()).add(name)
        self._property_columns = {key: f"_p{i}" for i, key in enumerate(sorted(wanted))}

        def extract(key: str) -> ir.StringValue:
            return ibis.cases((_named(ev, wanted[key]), self.d.json(ev.properties, key)), else_=ibis.null("string"))

        ev = ev.select(
            "user_id",
            "anonymous_id",
            "type",
            "event",
            "channel",
            "timestamp",
            **{col: extract(key) for key, col in self._property_columns.items()},
        ).cache()
        parts: list[ir.Table] = []
        prev = the_plan.previous
        for b in the_plan.fresh:
            w = SC.window(b)
            m = self._matching_in(ev, b.event, b.filters)
            if w is not None:
                m = m.filter(m.timestamp > self._at(self.now - w))
            parts.append(_per_key(m, b, m.count()))
        if prev is not None and the_plan.carried:
            keys = [SC.behaviour_key(b) for b in the_plan.carried]
            assert self.read_kept is not None, "kept counts need the warehouse they were written to"
            kept = self.read_kept()
            parts.append(kept.filter(kept.behaviour.isin(keys)).select("user_id", "anonymous_id", "n", "behaviour"))
            late = None
            if the_plan.late_files:
                late = self._slice(self._read(list(the_plan.late_files)), behaviours, [(None, prev.now)])
            for b in the_plan.carried:
                w = SC.window(b)
                m = self._matching_in(ev, b.event, b.filters)
                sign = ibis.cases(
                    ((m.timestamp > self._at(prev.now)) & (m.timestamp <= self._now()), 1),
                    *(
                        [((m.timestamp > self._at(prev.now - w)) & (m.timestamp <= self._at(self.now - w)), -1)]
                        if w is not None
                        else []
                    ),
                    else_=0,
                )
                delta = m.mutate(_s=sign)
                delta = delta.filter(delta._s != 0)
                parts.append(_per_key(delta, b, delta._s.sum()))
                if late is not None:
                    m = self._matching_in(late, b.event, b.filters)
                    m = m.filter(m.timestamp <= self._at(prev.now))
                    if w is not None:
                        m = m.filter(m.timestamp > self._at(prev.now - w))
                    parts.append(_per_key(m, b, m.count()))
        long: list[ir.Table] = []
        if parts:
            union = ibis.union(*[p.select("behaviour", "user_id", "anonymous_id", n=p.n.cast("int64")) for p in parts])
            if the_plan.carried:  # kept counts and changes of the same keys: added up
                union = union.group_by("behaviour", "user_id", "anonymous_id").aggregate(n=union.n.sum())
                union = union.filter(union.n > 0)
            self.kept = union.cache()  # counted afresh: one row per key and condition already
            by_person = with_person(self.kept, self.identities)
            long.append(by_person.group_by("behaviour", "person_id").aggregate(n=by_person.n.sum()))
        if the_plan.sequences:
            seq_ranges = [
                (None if (window := SC.window(b)) is None else self.now - window, self.now) for b in the_plan.sequences
            ]
            seq = self._slice(ev, {b: "" for b in the_plan.sequences}, seq_ranges)
            self._events = with_person(seq, self.identities).cache()
            for b in the_plan.sequences:
                counts = self._behaviour_counts(b, "n")
                long.append(
                    counts.mutate(behaviour=ibis.literal(SC.behaviour_key(b))).select("behaviour", "person_id", "n")
                )
        table = ibis.union(*[t.select("behaviour", "person_id", n=t.n.cast("int64")) for t in long])
        columns = {b: f"_b{i}" for i, b in enumerate(behaviours)}
        wide = table.group_by("person_id").aggregate(
            **{col: table.n.sum(where=table.behaviour == SC.behaviour_key(b)) for b, col in columns.items()}
        )
        self._wide = wide.cache()
        self._columns = columns
        return the_plan

    def person_counts(self, behaviours: Iterable[S.Behaviour]) -> dict[str, dict[S.Behaviour, int]]:
        """After `prepare`: each person's count of these behaviour conditions (those with a count only)."""
        assert self._wide is not None, "prepare first"
        columns = {b: self._columns[b] for b in behaviours}
        out: dict[str, dict[S.Behaviour, int]] = {}
        for row in to_arrow(self._wide.select("person_id", *columns.values())).to_pylist():
            counts = {b: int(row[c]) for b, c in columns.items() if row[c]}
            if counts:
                out[row["person_id"]] = counts
        return out

    def occurrences(self, b: S.Behaviour, lo: datetime, hi: datetime) -> list[tuple[str, datetime]]:
        """(person, timestamp) of the events matching a behaviour condition with lo < timestamp <= hi."""
        ev = self._slice(self._read(SC.files_for(self.files or {}, [(lo, hi)])), [b], [(lo, hi)])
        ev = with_person(ev, self.identities)
        m = self._matching_in(ev, b.event, b.filters)
        return [(r["person_id"], r["timestamp"]) for r in to_arrow(m.select("person_id", "timestamp")).to_pylist()]

    def _read(self, files: list[str]) -> ir.Table:
        """These files of the events (relative paths), or the whole `events` table when no snapshot is known."""
        if self.read_files is None or self.files is None:
            return self.raw_events
        return self.read_files(files)

    def _slice(self, ev: ir.Table, behaviours: Iterable[S.Behaviour], ranges: Sequence[SC.Range]) -> ir.Table:
        """The events of the behaviours' names (and call types) in one of the ranges."""
        names: set[str] = set()
        for b in behaviours:
            names.add(b.event)
            if b.then_not is not None:
                names.add(b.then_not.event)
        wanted = _named(ev, names)
        within = None
        for lo, hi in SC.merge_ranges(ranges):  # one range where they overlap: a plain range the scan can push down
            part = ev.timestamp <= self._at(hi)
            if lo is not None:
                part = part & (ev.timestamp > self._at(lo))
            within = part if within is None else within | part
        return ev.filter(wanted & within) if within is not None else ev.filter(wanted)

    def _at(self, moment: datetime) -> ir.TimestampScalar:
        return ibis.literal(moment, dt.Timestamp(timezone="UTC"))

    def _now(self) -> ir.TimestampScalar:
        return ibis.literal(self.now, dt.Timestamp(timezone="UTC"))

    def members(self, segment_id: str) -> ir.Table:
        """The person ids (one column, `person_id`) of the segment's members."""
        seg = self.segments[segment_id]
        problems: list[tuple[str, str]] = []
        behaviours: dict[S.Behaviour, str] = {}
        self._collect(seg.where, behaviours)
        base = self.profiles
        if self._wide is not None and all(b in self._columns for b in behaviours):
            behaviours = {b: self._columns[b] for b in behaviours}
            if behaviours:
                wide = self._wide.select("person_id", *behaviours.values())
                base = base.left_join(wide, "person_id").drop("person_id_right")
        else:
            for behaviour, column in behaviours.items():
                counts = self._behaviour_counts(behaviour, column)
                base = base.left_join(counts, "person_id").drop("person_id_right")
        predicate = self._predicate(seg.where, base, behaviours, "where", problems, (segment_id,))
        if problems:
            raise S.SegmentError(seg.source or seg.id, problems)
        return base.filter(predicate).select("person_id")

    def all_members(self, segment_ids: Sequence[str]) -> dict[str, pa.Array]:
        """After `prepare` (needed when a segment counts events): every segment's member person ids, from one
        pass over the profiles joined once with the counts (a boolean column per segment), instead of a query
        per segment."""
        if self._wide is None:  # no behaviour condition (else: `prepare` first)
            base = self.profiles
        else:
            base = self.profiles.left_join(self._wide, "person_id").drop("person_id_right")
        predicates = {}
        for i, sid in enumerate(segment_ids):
            seg = self.segments[sid]
            problems: list[tuple[str, str]] = []
            predicates[f"_s{i}"] = self._predicate(seg.where, base, self._columns, "where", problems, (sid,))
            if problems:
                raise S.SegmentError(seg.source or seg.id, problems)
        table = to_arrow(base.select("person_id", **predicates))
        person = table.column("person_id")
        return {sid: person.filter(table.column(f"_s{i}")).combine_chunks() for i, sid in enumerate(segment_ids)}

    def _collect(self, node: S.Condition, behaviours: dict[S.Behaviour, str]) -> None:
        for b in S.behaviours_of(node, self.segments):
            behaviours.setdefault(b, f"_b{len(behaviours)}")

    # -- behaviour --

    def _matching(self, event: str, filters: Sequence[S.Filter]) -> ir.Table:
        return self._matching_in(self.events, event, filters)

    def _matching_in(self, ev: ir.Table, event: str, filters: Sequence[S.Filter]) -> ir.Table:
        ev = ev.filter(_named(ev, {event}))
        for f in filters:
            ev = ev.filter(self._filter(ev, f))
        return ev

    def _filter(self, ev: ir.Table, f: S.Filter) -> ir.BooleanValue:
        stored = self._property_columns.get(f.key)
        if f.key == "channel":
            text = ev.channel
        elif stored is not None and stored in ev.columns:
            text = ev[stored]
        else:
            text = self.d.json(ev.properties, f.key)
        if f.op == "is_null":
            return text.isnull() if f.value else text.notnull()
        values = f.value if f.op in S.LIST_OPS else (f.value,)
        if all(isinstance(v, bool) for v in values):
            column: ir.Value = text.lower()
            values = tuple("true" if v else "false" for v in values)
        elif all(isinstance(v, (int, float)) for v in values):
            column = text.try_cast("float64")  # a text that is not a number is NULL, not an error
            values = tuple(float(v) for v in values)
        else:
            column = text
            values = tuple(str(v) for v in values)
        return _compare(column, f.op, values if f.op in S.LIST_OPS else values[0]).fill_null(False)

    def _window(self, ev: ir.Table, days: float | None) -> ir.Table:
        if days is None:
            return ev
        since = ibis.literal(self.now - timedelta(days=days), dt.Timestamp(timezone="UTC"))
        return ev.filter(ev.timestamp > since)

    def _behaviour_counts(self, b: S.Behaviour, column: str) -> ir.Table:
        first = self._window(self._matching(b.event, b.filters), b.within_days)
        if b.then_not is not None:
            hours = b.then_not.within_hours
            span = ibis.interval(seconds=round(hours * 3600))
            # only occurrences whose whole follow-up window has passed can be "not followed"
            done = ibis.literal(self.now - timedelta(hours=hours), dt.Timestamp(timezone="UTC"))
            first = first.filter(first.timestamp <= done).select("person_id", _at=first.timestamp)
            second = self._matching(b.then_not.event, b.then_not.filters)
            second = second.select(_p2="person_id", _at2=second.timestamp)
            first = first.anti_join(
                second, [first.person_id == second._p2, second._at2 > first._at, second._at2 <= first._at + span]
            )
        return first.group_by("person_id").aggregate(**{column: first.count()})

    # -- the tree --

    def _predicate(
        self,
        node: S.Condition,
        base: ir.Table,
        behaviours: Mapping[S.Behaviour, str],
        path: str,
        problems: list[tuple[str, str]],
        trail: tuple[str, ...],
    ) -> ir.BooleanValue:
        if isinstance(node, S.All):
            parts = [
                self._predicate(c, base, behaviours, f"{path}.all[{i}]", problems, trail)
                for i, c in enumerate(node.children)
            ]
            out = parts[0]
            for p in parts[1:]:
                out = out & p
            return out
        if isinstance(node, S.AnyOf):
            parts = [
                self._predicate(c, base, behaviours, f"{path}.any[{i}]", problems, trail)
                for i, c in enumerate(node.children)
            ]
            out = parts[0]
            for p in parts[1:]:
                out = out | p
            return out
        if isinstance(node, S.Not):
            return ~self._predicate(node.child, base, behaviours, f"{path}.not", problems, trail)
        if isinstance(node, S.Behaviour):
            count = base[behaviours[node]].fill_null(0)
            return {"at_least": count >= node.count, "at_most": count <= node.count, "exactly": count == node.count}[
                node.count_op
            ]
        if isinstance(node, S.InSegment):
            if node.segment_id in trail:
                problems.append((path, "in_segment cycle: " + " -> ".join((*trail, node.segment_id))))
                return ibis.literal(False)
            other = self.segments[node.segment_id]
            return self._predicate(
                other.where,
                base,
                behaviours,
                f"{path}.in_segment({node.segment_id})",
                problems,
                (*trail, node.segment_id),
            )
        if isinstance(node, S.Bucket):
            bucket = _bucket_expr(node.salt, base.person_id, self.d)
            return (bucket >= node.low) & (bucket < node.high)
        return self._trait(node, base, path, problems)

    def _trait(self, t: S.Trait, base: ir.Table, path: str, problems: list[tuple[str, str]]) -> ir.BooleanValue:
        if t.name not in self.profiles.columns:
            known = ", ".join(c for c in self.profiles.columns if not c.startswith("_"))
            problems.append((f"{path}.trait", f"unknown trait {t.name!r}; the profile has: {known}"))
            return ibis.literal(False)
        column = base[t.name]
        typ = column.type()
        where = f"{path}.{t.op}"
        if t.op == "is_null":
            empty = column.isnull()
            if typ.is_array():
                empty = empty | (column.length() == 0)
            return empty if t.value else ~empty
        if t.op == "contains":
            if not typ.is_array():
                problems.append((where, f"contains needs a list trait; {t.name!r} is {typ}"))
                return ibis.literal(False)
            return column.contains(_literal(typ.value_type, t.value, where, problems)).fill_null(False)
        if typ.is_array() or typ.is_struct() or typ.is_map():
            problems.append((where, f"{t.op} compares one value; {t.name!r} is {typ} (use contains or is_null)"))
            return ibis.literal(False)
        if t.op in ("before_days_ago", "within_days"):
            if not typ.is_timestamp() and not typ.is_date():
                problems.append((where, f"{t.op} needs a timestamp trait; {t.name!r} is {typ}"))
                return ibis.literal(False)
            moment = ibis.literal(self.now - timedelta(days=float(t.value)), dt.Timestamp(timezone="UTC"))
            result = column < moment if t.op == "before_days_ago" else column >= moment
            return result.fill_null(False)
        if t.op in S.LIST_OPS or t.op == "between":
            values = tuple(_literal(typ, v, where, problems) for v in t.value)
            if t.op == "between":
                return column.between(values[0], values[1]).fill_null(False)
            return _compare(column, t.op, values).fill_null(False)
        return _compare(column, t.op, _literal(typ, t.value, where, problems)).fill_null(False)


def _per_key(matched: ir.Table, b: S.Behaviour, n: ir.IntegerValue) -> ir.Table:
    """(behaviour, user_id, anonymous_id, n): `n` aggregated per event key for the behaviour condition `b`."""
    return (
        matched.group_by("user_id", "anonymous_id")
        .aggregate(n=n.cast("int64"))
        .mutate(behaviour=ibis.literal(SC.behaviour_key(b)))
    )


def _named(ev: ir.Table, names: Iterable[str]) -> ir.BooleanValue:
    """The event is one of `names`: a track event's name, or for the names of TYPE_EVENTS the call's type."""
    names = sorted(set(names))
    types = sorted(TYPE_EVENTS[n] for n in names if n in TYPE_EVENTS)
    tracks = [n for n in names if n not in TYPE_EVENTS]
    parts = ([ev.event.isin(tracks) if len(tracks) > 1 else ev.event == tracks[0]] if tracks else []) + (
        [ev.type.isin(types) if len(types) > 1 else ev.type == types[0]] if types else []
    )
    out = parts[0]
    for part in parts[1:]:
        out = out | part
    return out


def _compare(column: ir.Value, op: str, value: Any) -> ir.BooleanValue:
    if op == "in":
        return column.isin(list(value))
    if op == "not_in":
        return column.notin(list(value))
    return {
        "eq": column == value,
        "ne": column != value,
        "gt": column > value,
        "gte": column >= value,
        "lt": column < value,
        "lte": column <= value,
    }[op]


def _literal(typ: dt.DataType, value: Any, where: str, problems: list[tuple[str, str]]) -> Any:
    """`value` as the trait's type, or a problem."""
    if typ.is_boolean():
        if isinstance(value, bool):
            return value
    elif typ.is_integer() or typ.is_floating() or typ.is_decimal():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return value
    elif typ.is_timestamp() or typ.is_date():
        moment = S.moment_of(value)
        if moment is not None:
            return ibis.literal(moment, dt.Timestamp(timezone="UTC")) if typ.is_timestamp() else moment.date()
    elif typ.is_string():
        if isinstance(value, str):
            return value
    else:
        return value
    problems.append((where, f"expected a value of the trait's type ({typ}); got {value!r}"))
    return ibis.null(typ)


def _bucket_expr(salt: str, person_id: ir.StringValue, d: Dialect) -> ir.IntegerValue:
    """segments.language.bucket_of in Ibis: md5's first 8 hex digits as a number, modulo 100 (the same on every engine).

    Read as a number by each engine's own spelling (`Dialect.hex_to_int`)."""
    digits = (ibis.literal(f"{salt}:") + person_id).hexdigest("md5").substr(0, 8)
    return d.hex_to_int(digits) % 100


# --- evaluating ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentResult:
    segment_id: str
    name: str
    members: int
    entered: int
    exited: int


@dataclass(frozen=True)
class EvaluationSummary:
    now: datetime
    results: tuple[SegmentResult, ...]
    events_written: int
    path: str
    counting: str = ""  # how behaviour conditions were counted: in full, or carried forward since when

    def sizes(self) -> dict[str, int]:
        return {r.segment_id: r.members for r in self.results}

    def to_dict(self) -> dict[str, Any]:
        """The evaluation as JSON values (`segments evaluate --format json`, the API)."""
        return {
            "now": self.now.isoformat(),
            "events_written": self.events_written,
            "counting": self.counting,
            "segments": [asdict(r) for r in self.results],
        }


def compiler_for(
    runtime: Runtime,
    segments: Mapping[str, S.Segment],
    now: datetime | None = None,
) -> Compiler:
    """A Compiler over the runtime's warehouse (profiles, events, identities must exist), reading the event
    files there are now (a snapshot: files the loader adds meanwhile wait for the next evaluation)."""
    for name, command in (("profiles", "omniweave profiles build"), ("identities", "omniweave resolve")):
        if not runtime.log.has_data(name):
            raise InputError(f"no {name} yet: run `{command}` before evaluating segments", field=name)
    warehouse = runtime.warehouse()
    files = SC.event_files(runtime.log)
    if now is None:
        now = runtime.log.latest_event_time() or datetime.now(UTC)
    now = (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(UTC)

    def read_files(relative: list[str]) -> ir.Table:
        return warehouse.files_table("events", SC.absolute(runtime.log, relative))

    return Compiler(
        warehouse.table("profiles"),
        lambda: warehouse.table("events"),
        warehouse.table("identities"),
        now,
        segments,
        files=files,
        read_files=read_files,
        read_kept=lambda: warehouse.table(SC.STATE_DATASET),
    )


def member_ids(compiler: Compiler, segment_id: str) -> list[str]:
    """The sorted person ids of one segment."""
    table = to_arrow(compiler.members(segment_id))
    return sorted(table.column("person_id").to_pylist())


@guarded("segments")
def evaluate_segments(
    runtime: Runtime,
    segments: Mapping[str, S.Segment] | None = None,
    *,
    now: datetime | None = None,
    record_changes: bool = True,
    incremental: bool = True,
) -> EvaluationSummary:
    """Every segment's members as of `now`: written to `segment_members`, with an event per change.

    A member keeps the `since` of the evaluation that first found them; a person who left and came
    back gets a new one. With `incremental`, behaviour counts kept by the last evaluation are carried
    forward where they can be (segment_counts.py); the result is the same either way."""
    segments = dict(segments) if segments is not None else load_segments(runtime.settings)
    compiler = compiler_for(runtime, segments, now)
    kept = SC.read_state(runtime.log)
    plan = compiler.prepare(segments, kept if incremental else None)
    now = compiler.now
    previous = (
        runtime.warehouse().table("segment_members").to_pyarrow().select(MEMBERS_SCHEMA.names).cast(MEMBERS_SCHEMA)
        if runtime.log.has_data("segment_members")
        else MEMBERS_SCHEMA.empty_table()
    )
    if kept is not None:
        # what the live path (segments_live.py) announced since the last evaluation is already known
        from omniweave.segments.service.live import live_changes_since

        previous = _with_live_changes(previous, [c for c in live_changes_since(runtime, kept.now) if c.at <= now])
    order = S.evaluation_order(segments)
    parts = []
    found_all = compiler.all_members(order)
    for sid in order:
        found = found_all[sid]
        parts.append(pa.table({"segment_id": pa.array([sid] * len(found), pa.string()), "person_id": found}))
    current = (
        pa.concat_tables(parts)
        if parts
        else pa.table({"segment_id": pa.array([], pa.string()), "person_id": pa.array([], pa.string())})
    )
    table, changes, counted = _membership_changes(previous, current, order, now)
    results = [SegmentResult(sid, segments[sid].name, *counted.get(sid, (0, 0, 0))) for sid in order]
    path = write_dataset(runtime.log, "segment_members", table)
    written = _record_changes(runtime, segments, changes, now) if record_changes and changes else 0
    counts = to_arrow(compiler.kept) if compiler.kept is not None else SC.STATE_SCHEMA.empty_table()
    # the snapshot read, without the change events just written: the next evaluation counts those as late
    SC.write_state(
        runtime.log, counts, now, [SC.behaviour_key(b) for b in (*plan.fresh, *plan.carried)], compiler.files or {}
    )
    read = f"; read {compiler.files_read:,} of the log's {len(compiler.files or {}):,} event files"
    return EvaluationSummary(now, tuple(results), written, path, plan.describe() + read)


def _with_live_changes(previous: pa.Table, changes: Sequence[Any]) -> pa.Table:
    """The members of the last evaluation with the live path's changes since applied, in their order."""
    if not changes:
        return previous
    last: dict[tuple[str, str], Any] = {}
    for change in changes:
        last[(change.segment_id, change.person_id)] = change
    keys = set(last)
    segment_ids, person_ids = previous.column("segment_id").to_pylist(), previous.column("person_id").to_pylist()
    keep = [(sid, pid) not in keys for sid, pid in zip(segment_ids, person_ids, strict=True)]
    # a person the live path let in keeps the `since` they had if they were a member before
    since = {
        (sid, pid): t
        for sid, pid, t, k in zip(segment_ids, person_ids, previous.column("since").to_pylist(), keep, strict=True)
        if not k
    }
    added = [(k, since.get(k, c.at)) for k, c in sorted(last.items()) if c.entered]
    extra = pa.table(
        [
            pa.array([k[0] for k, _ in added], pa.string()),
            pa.array([k[1] for k, _ in added], pa.string()),
            pa.array([t for _, t in added], pa.timestamp("us", tz="UTC")),
        ],
        schema=MEMBERS_SCHEMA,
    )
    return pa.concat_tables([previous.filter(pa.array(keep)), extra])


def _membership_changes(
    previous: pa.Table, current: pa.Table, order: Sequence[str], now: datetime
) -> tuple[pa.Table, list[tuple[str, str, str]], dict[str, tuple[int, int, int]]]:
    """The new `segment_members` (a stayer keeps their `since`), the changes (entered, then exited, per segment
    in evaluation order, persons sorted) and (members, entered, exited) per segment. Segments no longer defined
    keep no members, and their members are not told they left."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("prev", previous)
        con.register("cur", current)
        con.register(
            "seg",
            pa.table(
                {"segment_id": pa.array(list(order), pa.string()), "rank": pa.array(range(len(order)), pa.int64())}
            ),
        )
        stamp = now.astimezone(UTC).replace(tzinfo=None).isoformat()
        members = (
            con.sql(f"""
            SELECT c.segment_id, c.person_id, coalesce(p.since, TIMESTAMPTZ '{stamp}+00:00') AS since
            FROM cur c LEFT JOIN prev p USING (segment_id, person_id)
            ORDER BY c.segment_id, c.person_id""")
            .to_arrow_table()
            .cast(MEMBERS_SCHEMA)
        )
        changed = con.sql(f"""
            SELECT '{S.SEGMENT_ENTERED}' AS name, c.segment_id, c.person_id, s.rank, 0 AS kind
            FROM cur c JOIN seg s USING (segment_id) ANTI JOIN prev p USING (segment_id, person_id)
            UNION ALL
            SELECT '{S.SEGMENT_EXITED}', p.segment_id, p.person_id, s.rank, 1
            FROM prev p JOIN seg s USING (segment_id) ANTI JOIN cur c USING (segment_id, person_id)
            ORDER BY rank, kind, person_id""").to_arrow_table()
    finally:
        con.close()
    names, sids, pids = (changed.column(c).to_pylist() for c in ("name", "segment_id", "person_id"))
    changes = list(zip(names, sids, pids, strict=True))
    counted: dict[str, list[int]] = {sid: [0, 0, 0] for sid in order}
    for sid, n in zip(*pc.value_counts(current.column("segment_id")).flatten(), strict=True):
        counted[sid.as_py()][0] = n.as_py()
    for name, sid, _ in changes:
        counted[sid][1 if name == S.SEGMENT_ENTERED else 2] += 1
    return members, changes, {k: (v[0], v[1], v[2]) for k, v in counted.items()}


def _record_changes(
    runtime: Runtime, segments: Mapping[str, S.Segment], changes: Sequence[tuple[str, str, str]], now: datetime
) -> int:
    """Append one `Segment Entered` / `Segment Exited` track event per change, carrying the person's user id
    (else one of their anonymous ids) so that the event belongs to the person like any other."""
    table = change_events(changes, segments, _first_ids(runtime, {p for _, _, p in changes}), now)
    message_ids = table.column("message_id").to_pylist()
    # named by its content: the same changes written again replace the same file; other changes at the
    # same `now` (a redefined segment) get a file of their own
    digest = hashlib.sha256("\n".join(message_ids).encode()).hexdigest()[:16]
    runtime.log.append("events", table, batch_name=f"segments-{now:%Y%m%dT%H%M%S%f}-{digest}")
    _announce(runtime, message_ids, inbox_payloads(table, now))
    return table.num_rows


def _first_ids(runtime: Runtime, persons: set[str]) -> pa.Table:
    """(person_id, user_id, anonymous_id): each of these persons' smallest user id and smallest anonymous id
    (NULL when they have none), from `identities`."""
    ids = runtime.warehouse().table("identities")
    # a value from U+FFFF up is never picked, as by the per-row loop this replaced (which started from "\uffff")
    ids = ids.filter(ids.kind.isin(("user_id", "anonymous_id")) & (ids.value < "\uffff"))
    if len(persons) <= 10_000:  # else every identity's (a literal list that long is slow to plan)
        ids = ids.filter(ids.person_id.isin(sorted(persons)))
    first = ids.group_by("person_id").aggregate(
        user_id=ids.value.min(where=ids.kind == "user_id"),
        anonymous_id=ids.value.min(where=ids.kind == "anonymous_id"),
    )
    return to_arrow(first)


def change_event(
    name: str, segment: S.Segment, person: str, user_id: str | None, anonymous_id: str | None, now: datetime
) -> dict[str, Any]:
    """The track event that logs one membership change at `now`, carrying the person's user id, else the
    anonymous id."""
    from omniweave.events.normalize import deterministic_message_id, format_timestamp

    stamp = format_timestamp(now)
    return {
        "type": "track",
        "event": name,
        "messageId": deterministic_message_id(SEGMENT_SOURCE, name, segment.id, person, stamp),
        "userId": user_id,
        "anonymousId": None if user_id is not None else anonymous_id,
        "timestamp": stamp,
        "receivedAt": stamp,
        "properties": {
            "segment_id": segment.id,
            "segment_name": segment.name,
            "person_id": person,
            "channel": "omniweave",
        },
        "context": {"library": {"name": "omniweave-segments"}},
    }


def change_events(
    changes: Sequence[tuple[str, str, str]], segments: Mapping[str, S.Segment], first_ids: pa.Table, now: datetime
) -> pa.Table:
    """`events_to_table` of the `change_event` of every (name, segment id, person id), built column by column:
    the first evaluation at a million persons logs about as many changes, and a dict per event converted row
    by row was most of its time. `first_ids` holds (person_id, user_id, anonymous_id), as `_first_ids` gives.

    Only the message id, the name, the ids and the properties differ from one change event to another; every
    other column is that of one change event converted by `events_to_table`."""
    import orjson

    from omniweave.events.normalize import deterministic_message_id, format_timestamp
    from omniweave.storage.eventlog import EVENT_SCHEMA, events_to_table

    if not changes:
        return EVENT_SCHEMA.empty_table()
    stamp = format_timestamp(now)
    persons = pa.array([person for _, _, person in changes], pa.string())
    where = pc.index_in(persons, first_ids.column("person_id"))
    user_ids = first_ids.column("user_id").combine_chunks().take(where)
    anonymous_ids = first_ids.column("anonymous_id").combine_chunks().take(where)
    anonymous_ids = pc.if_else(pc.is_null(user_ids), anonymous_ids, pa.scalar(None, pa.string()))
    # the properties' JSON as orjson writes the dict of `change_event`, each segment's part written once
    heads = {
        sid: orjson.dumps({"segment_id": sid, "segment_name": segments[sid].name})[:-1] + b',"person_id":'
        for sid in {sid for _, sid, _ in changes}
    }
    tail = b',"channel":"omniweave"}'
    varying = {
        "message_id": pa.array(
            [deterministic_message_id(SEGMENT_SOURCE, name, sid, person, stamp) for name, sid, person in changes],
            pa.string(),
        ),
        "event": pa.array([name for name, _, _ in changes], pa.string()),
        "user_id": user_ids,
        "anonymous_id": anonymous_ids,
        "properties": pa.array(
            [(heads[sid] + orjson.dumps(person) + tail).decode() for _, sid, person in changes], pa.string()
        ),
    }
    name, sid, person = changes[0]
    one = events_to_table([change_event(name, segments[sid], person, None, None, now)], source=SEGMENT_SOURCE)
    arrays = [
        varying[f.name].cast(f.type) if f.name in varying else pa.repeat(one.column(f.name)[0], len(changes))
        for f in EVENT_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def inbox_payloads(table: pa.Table, now: datetime) -> list[bytes]:
    """The inbox's JSON of each change event of `change_events(..., now)`: orjson's text of the event's dict
    without its None values, marked as logged (`collect.loader.LOGGED`), written from the table's columns."""
    import orjson

    from omniweave.collect.loader import LOGGED
    from omniweave.events.normalize import format_timestamp

    stamp = orjson.dumps(format_timestamp(now))
    moment = b',"timestamp":' + stamp + b',"receivedAt":' + stamp + b',"properties":'
    logged = b',"context":%s,%s:true}'
    out = []
    columns = ("event", "message_id", "user_id", "anonymous_id", "properties", "context")
    for name, message_id, user_id, anonymous_id, properties, context in zip(
        *(table.column(c).to_pylist() for c in columns), strict=True
    ):
        who = (
            b',"userId":' + orjson.dumps(user_id)
            if user_id is not None
            else b',"anonymousId":' + orjson.dumps(anonymous_id)
            if anonymous_id is not None
            else b""
        )
        out.append(
            b'{"type":"track","event":'
            + orjson.dumps(name)
            + b',"messageId":'
            + orjson.dumps(message_id)
            + who
            + moment
            + properties.encode()
            + logged % (context.encode(), orjson.dumps(LOGGED))
        )
    return out


def _announce(runtime: Runtime, message_ids: Sequence[str], payloads: Sequence[bytes]) -> None:
    """The changes just logged, handed to the inbox's other consumers too (the journey engine enters and wakes
    runs on `Segment Entered` / `Segment Exited` from the inbox, as it does for the live path's), marked as
    logged (`collect.loader.LOGGED`) so the loader does not write them to the log a second time. Their
    messageIds are those of the log, so an evaluation redone at the same `now` appends nothing new."""
    import time

    received = time.time()
    source_id = runtime.store.ensure_source(SEGMENT_SOURCE)
    rows = [(source_id, m, received, p) for m, p in zip(message_ids, payloads, strict=True)]
    for start in range(0, len(rows), 10_000):
        runtime.store.append(rows[start : start + 10_000])


def segment_summaries(segments: Mapping[str, S.Segment]) -> list[dict[str, Any]]:
    """id, name, description, persona fields and where it comes from, for listing."""
    return [
        {
            "id": s.id,
            "name": s.name,
            "description": s.description,
            "source": posixpath.basename(s.source),
            "persona": None
            if s.persona is None
            else {"target_kpis": list(s.persona.target_kpis), "preferred_channels": list(s.persona.preferred_channels)},
        }
        for s in sorted(segments.values(), key=lambda s: s.id)
    ]
