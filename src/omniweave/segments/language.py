"""Segment definitions: the condition tree of docs/segments.md, parsed and checked.

`parse_segment(document, source)` turns a mapping (from a YAML or TOML file, or an API body) into a
`Segment`, or raises `SegmentError` listing every problem at once, each with where it is (the
node's path, e.g. `where.all[1].where[0].gt`), the field and what is allowed. Checks that need the
data (does the trait exist, is it a timestamp) are made when the segment is compiled
(segments/service/evaluate.py), also all at once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypeGuard, Union

from omniweave.errors import InputError
from omniweave.events import spec

SEGMENT_ENTERED = spec.SEGMENT_ENTERED
SEGMENT_EXITED = spec.SEGMENT_EXITED

VALUE_OPS = ("eq", "ne", "gt", "gte", "lt", "lte")
LIST_OPS = ("in", "not_in")
TRAIT_OPS = (*VALUE_OPS, *LIST_OPS, "between", "is_null", "contains", "before_days_ago", "within_days")
FILTER_OPS = (*VALUE_OPS, *LIST_OPS, "is_null")
COUNT_OPS = ("at_least", "at_most", "exactly")
KINDS = ("all", "any", "not", "trait", "performed", "not_performed", "in_segment", "bucket")
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


@dataclass(frozen=True)
class Trait:
    """A profile column compared with a value: `op` is one of TRAIT_OPS."""

    name: str
    op: str
    value: Any


@dataclass(frozen=True)
class Filter:
    """A condition on an event: `key` is a property of `properties`, or `channel`."""

    key: str
    op: str
    value: Any


@dataclass(frozen=True)
class ThenNot:
    """...not followed by `event` (matching `filters`) within `within_hours`."""

    event: str
    within_hours: float
    filters: tuple[Filter, ...] = ()


@dataclass(frozen=True)
class Behaviour:
    """Performed (or not) `event` matching `filters`, counted against `count_op count`, within a window."""

    event: str
    negated: bool
    filters: tuple[Filter, ...] = ()
    count_op: str = "at_least"
    count: int = 1
    within_days: float | None = None
    then_not: ThenNot | None = None


@dataclass(frozen=True)
class All:
    children: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    children: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    child: Condition


@dataclass(frozen=True)
class InSegment:
    segment_id: str


@dataclass(frozen=True)
class Bucket:
    """Persons whose bucket (`bucket_of(salt, person_id)`, 0-99) lies in [low, high)."""

    salt: str
    low: int
    high: int


Condition = Union[All, AnyOf, Not, Trait, Behaviour, InSegment, Bucket]  # noqa: UP007 (a runtime alias)


@dataclass(frozen=True)
class Persona:
    target_kpis: tuple[str, ...] = ()
    preferred_channels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Segment:
    id: str
    name: str
    description: str
    where: Condition
    persona: Persona | None = None
    source: str = ""
    tags: tuple[str, ...] = field(default=())


def moment_of(value: Any) -> datetime | None:
    """A relative-date or timestamp value of a definition as an aware UTC datetime (naive means UTC); None
    when it is not one (a text that is not ISO 8601, a number)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


class SegmentError(InputError):
    """A segment definition with problems: `problems` lists each as (path, message)."""

    def __init__(self, source: str, problems: Sequence[tuple[str, str]]):
        self.problems = list(problems)
        lines = "\n".join(f"  {path or '(top)'}: {message}" for path, message in self.problems)
        super().__init__(f"segment {source}: {len(self.problems)} problem(s):\n{lines}")


def parse_segment(document: Any, source: str = "<segment>", default_id: str | None = None) -> Segment:
    """`document` (a mapping: id, name, description, where, persona) as a Segment; every problem at once."""
    problems: list[tuple[str, str]] = []
    if not isinstance(document, Mapping):
        raise SegmentError(source, [("", f"expected a mapping with id, name, where; got {type(document).__name__}")])
    known = {"id", "name", "description", "where", "persona", "tags"}
    for key in document:
        if key not in known:
            problems.append((str(key), f"unknown field; allowed: {', '.join(sorted(known))}"))
    seg_id = document.get("id", default_id)
    if not isinstance(seg_id, str) or not ID_PATTERN.match(seg_id):
        problems.append(("id", f"expected 1-100 letters, digits, _ or -; got {seg_id!r}"))
    name = document.get("name", seg_id)
    if not isinstance(name, str) or not name.strip():
        problems.append(("name", f"expected a non-empty text; got {name!r}"))
    description = document.get("description", "")
    if not isinstance(description, str):
        problems.append(("description", f"expected a text; got {description!r}"))
    tags = document.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        problems.append(("tags", f"expected a list of texts; got {tags!r}"))
    where: Condition | None = None
    if "where" not in document:
        problems.append(("where", "missing: the condition tree (all / any / not / trait / performed / ...)"))
    else:
        where = _condition(document["where"], "where", problems)
    persona = None
    if "persona" in document:
        persona = _persona(document["persona"], problems)
    if problems or where is None:
        raise SegmentError(source, problems)
    return Segment(
        id=seg_id, name=name, description=description, where=where, persona=persona, source=source, tags=tuple(tags)
    )


def _persona(raw: Any, problems: list[tuple[str, str]]) -> Persona | None:
    if not isinstance(raw, Mapping):
        problems.append(("persona", "expected a mapping with target_kpis and preferred_channels"))
        return None
    out = {}
    for key in ("target_kpis", "preferred_channels"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.append((f"persona.{key}", f"expected a list of texts; got {value!r}"))
            value = []
        out[key] = tuple(value)
    for key in raw:
        if key not in out:
            problems.append((f"persona.{key}", "unknown field; allowed: preferred_channels, target_kpis"))
    return Persona(**out)


def _number(value: Any) -> TypeGuard[float]:
    """A number (int or float), not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _condition(raw: Any, path: str, problems: list[tuple[str, str]]) -> Condition | None:
    if not isinstance(raw, Mapping):
        problems.append((path, f"expected a condition (a mapping with one of {', '.join(KINDS)}); got {raw!r}"))
        return None
    kinds = [k for k in KINDS if k in raw]
    if len(kinds) != 1:
        problems.append((path, f"expected exactly one of {', '.join(KINDS)}; got {sorted(map(str, raw)) or 'none'}"))
        return None
    kind = kinds[0]
    if kind in ("all", "any"):
        _only(raw, {kind}, path, problems)
        items = raw[kind]
        if not isinstance(items, list) or not items:
            problems.append((f"{path}.{kind}", "expected a non-empty list of conditions"))
            return None
        children = [_condition(c, f"{path}.{kind}[{i}]", problems) for i, c in enumerate(items)]
        if any(c is None for c in children):
            return None
        return All(tuple(children)) if kind == "all" else AnyOf(tuple(children))  # type: ignore[arg-type]
    if kind == "not":
        _only(raw, {"not"}, path, problems)
        child = _condition(raw["not"], f"{path}.not", problems)
        return None if child is None else Not(child)
    if kind == "trait":
        return _trait(raw, path, problems)
    if kind in ("performed", "not_performed"):
        return _behaviour(raw, kind, path, problems)
    if kind == "in_segment":
        _only(raw, {"in_segment"}, path, problems)
        seg = raw["in_segment"]
        if not isinstance(seg, str) or not ID_PATTERN.match(seg):
            problems.append((f"{path}.in_segment", f"expected a segment id; got {seg!r}"))
            return None
        return InSegment(seg)
    return _bucket(raw, path, problems)


def _only(raw: Mapping[str, Any], allowed: set[str], path: str, problems: list[tuple[str, str]]) -> None:
    for key in raw:
        if key not in allowed:
            problems.append((f"{path}.{key}", f"unknown field here; allowed: {', '.join(sorted(allowed))}"))


def _operator(
    raw: Mapping[str, Any], ops: Sequence[str], path: str, problems: list[tuple[str, str]]
) -> tuple[str, Any] | None:
    found = [op for op in ops if op in raw]
    if len(found) != 1:
        problems.append((path, f"expected exactly one operator of {', '.join(ops)}; got {found or 'none'}"))
        return None
    op = found[0]
    value = raw[op]
    where = f"{path}.{op}"
    if op in LIST_OPS and (not isinstance(value, list) or not value):
        problems.append((where, f"expected a non-empty list; got {value!r}"))
        return None
    if op == "between" and (not isinstance(value, list) or len(value) != 2):
        problems.append((where, f"expected [low, high]; got {value!r}"))
        return None
    if op == "is_null" and not isinstance(value, bool):
        problems.append((where, f"expected true or false; got {value!r}"))
        return None
    if op in ("before_days_ago", "within_days") and (not _number(value) or value < 0):
        problems.append((where, f"expected a number of days >= 0; got {value!r}"))
        return None
    if (op in VALUE_OPS or op == "contains") and (isinstance(value, (list, dict)) or value is None):
        problems.append((where, f"expected one value (text, number, true/false, date); got {value!r}"))
        return None
    return op, value


def _trait(raw: Mapping[str, Any], path: str, problems: list[tuple[str, str]]) -> Trait | None:
    name = raw["trait"]
    _only(raw, {"trait", *TRAIT_OPS}, path, problems)
    if not isinstance(name, str) or not name:
        problems.append((f"{path}.trait", f"expected a profile column name; got {name!r}"))
        return None
    op = _operator(raw, TRAIT_OPS, path, problems)
    return None if op is None else Trait(name, op[0], _freeze(op[1]))


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _filters(raw: Any, path: str, problems: list[tuple[str, str]]) -> tuple[Filter, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append((path, f"expected a list of {{property: KEY, OP: VALUE}}; got {raw!r}"))
        return ()
    out = []
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("property"), str) or not item.get("property"):
            problems.append((where, f"expected {{property: KEY, OP: VALUE}}; got {item!r}"))
            continue
        _only(item, {"property", *FILTER_OPS}, where, problems)
        op = _operator(item, FILTER_OPS, where, problems)
        if op is not None:
            out.append(Filter(item["property"], op[0], _freeze(op[1])))
    return tuple(out)


def _behaviour(raw: Mapping[str, Any], kind: str, path: str, problems: list[tuple[str, str]]) -> Behaviour | None:
    allowed = {kind, "where", "within_days", "then_not", *COUNT_OPS}
    _only(raw, allowed, path, problems)
    event = raw[kind]
    ok = True
    if not isinstance(event, str) or not event:
        problems.append((f"{path}.{kind}", f"expected an event name; got {event!r}"))
        ok = False
    filters = _filters(raw.get("where"), f"{path}.where", problems)
    counts = [c for c in COUNT_OPS if c in raw]
    count_op, count = "at_least", 1
    if counts:
        if kind == "not_performed":
            problems.append((f"{path}.{counts[0]}", "not_performed takes no count (it means: zero times)"))
            ok = False
        elif len(counts) > 1:
            problems.append((path, f"expected at most one of {', '.join(COUNT_OPS)}; got {counts}"))
            ok = False
        else:
            count_op, count = counts[0], raw[counts[0]]
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                problems.append((f"{path}.{count_op}", f"expected a whole number >= 0; got {count!r}"))
                ok = False
    within = raw.get("within_days")
    if within is not None and (not _number(within) or within <= 0):
        problems.append((f"{path}.within_days", f"expected a number of days > 0; got {within!r}"))
        ok = False
    then_not = None
    if "then_not" in raw:
        then_not = _then_not(raw["then_not"], f"{path}.then_not", problems)
        ok = ok and then_not is not None
    if not ok:
        return None
    if kind == "not_performed":
        count_op, count = "exactly", 0
    return Behaviour(
        event=event,
        negated=kind == "not_performed",
        filters=filters,
        count_op=count_op,
        count=count,
        within_days=float(within) if within is not None else None,
        then_not=then_not,
    )


def _then_not(raw: Any, path: str, problems: list[tuple[str, str]]) -> ThenNot | None:
    if not isinstance(raw, Mapping):
        problems.append((path, f"expected {{event: NAME, within_hours: H}}; got {raw!r}"))
        return None
    _only(raw, {"event", "within_hours", "where"}, path, problems)
    event, hours = raw.get("event"), raw.get("within_hours")
    name = event if isinstance(event, str) and event else None
    if name is None:
        problems.append((f"{path}.event", f"expected an event name; got {event!r}"))
    within = float(hours) if _number(hours) and hours > 0 else None
    if within is None:
        problems.append((f"{path}.within_hours", f"expected a number of hours > 0; got {hours!r}"))
    filters = _filters(raw.get("where"), f"{path}.where", problems)
    return ThenNot(name, within, filters) if name is not None and within is not None else None


def _bucket(raw: Mapping[str, Any], path: str, problems: list[tuple[str, str]]) -> Bucket | None:
    _only(raw, {"bucket"}, path, problems)
    spec = raw["bucket"]
    where = f"{path}.bucket"
    if not isinstance(spec, Mapping):
        problems.append((where, f"expected {{salt: TEXT, from: A, to: B}}; got {spec!r}"))
        return None
    salt = spec.get("salt")
    if not isinstance(salt, str) or not salt:
        problems.append((f"{where}.salt", f"expected a text; got {salt!r}"))
        salt = None
    bounds: list[int] = []
    for name, value in (("from", spec.get("from", 0)), ("to", spec.get("to"))):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
            problems.append((f"{where}.{name}", f"expected a whole number 0-100; got {value!r}"))
        else:
            bounds.append(value)
    if salt is None or len(bounds) < 2:
        return None
    low, high = bounds
    if low >= high:
        problems.append((where, f"expected from < to; got from {low}, to {high}"))
        return None
    return Bucket(salt, low, high)


def segment_references(condition: Condition) -> set[str]:
    """The ids of the segments `condition` refers to (`in_segment`), at any depth."""
    if isinstance(condition, InSegment):
        return {condition.segment_id}
    if isinstance(condition, (All, AnyOf)):
        return set().union(*(segment_references(c) for c in condition.children))
    if isinstance(condition, Not):
        return segment_references(condition.child)
    return set()


def leaves(condition: Condition, segments: Mapping[str, Segment], seen: set[str] | None = None) -> Iterator[Condition]:
    """The leaves of a tree (traits, behaviours, buckets) in reading order, through the segments it refers to
    (each referred segment once)."""
    seen = set() if seen is None else seen
    if isinstance(condition, (All, AnyOf)):
        for child in condition.children:
            yield from leaves(child, segments, seen)
    elif isinstance(condition, Not):
        yield from leaves(condition.child, segments, seen)
    elif isinstance(condition, InSegment):
        if condition.segment_id not in seen:
            seen.add(condition.segment_id)
            yield from leaves(segments[condition.segment_id].where, segments, seen)
    else:
        yield condition


def behaviours_of(condition: Condition, segments: Mapping[str, Segment]) -> list[Behaviour]:
    """The behaviour conditions of a tree, through the segments it refers to, in reading order, each once."""
    return list(dict.fromkeys(n for n in leaves(condition, segments) if isinstance(n, Behaviour)))


def evaluation_order(segments: Mapping[str, Segment]) -> list[str]:
    """Segment ids with every referenced segment before the ones that use it; unknown ids and cycles are errors."""
    problems = []
    for seg in segments.values():
        for ref in sorted(segment_references(seg.where)):
            if ref not in segments:
                problems.append(
                    (f"{seg.id}: in_segment", f"unknown segment {ref!r}; known: {', '.join(sorted(segments))}")
                )
    if problems:
        raise SegmentError("set", problems)
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(sid: str, trail: tuple[str, ...]) -> None:
        if state.get(sid) == 2:
            return
        if state.get(sid) == 1:
            raise SegmentError("set", [(sid, "in_segment cycle: " + " -> ".join((*trail, sid)))])
        state[sid] = 1
        for ref in sorted(segment_references(segments[sid].where)):
            visit(ref, (*trail, sid))
        state[sid] = 2
        order.append(sid)

    for sid in sorted(segments):
        visit(sid, ())
    return order


def bucket_of(salt: str, person_id: str) -> int:
    """The random bucket (0-99) of a person: the first 8 hex digits of md5(salt + ":" + person_id), modulo 100.

    The engines compute the same from the same digits (segments/service/evaluate.py)."""
    return int(hashlib.md5(f"{salt}:{person_id}".encode()).hexdigest()[:8], 16) % 100
