"""Journey conditions evaluated for one person: property filters, and branch conditions over traits and events.

`matches(filters, properties)` tests the filters of an entry, a wait, a goal or a condition against one
event's properties (or a profile's traits); `holds(condition, ...)` tests a branch condition. Pure: the
engine gathers the person's traits, recent events and segments and passes them in.

How values are compared (the same rules for every operator):

- A name is looked up as written first (a flat key may hold dots), then as a dotted path; a path
  through a list reaches every element (`products.category` is the category of each product). A
  filter holds when **any** value found passes it; `ne`, `not_in` and `missing` are the negations of
  `eq`, `in` and `exists` (so `ne` holds for a property that is not there). `null` counts as absent.
- Numbers compare as numbers, also with a text holding a number (`"42"` equals `42`); true/false only
  equal true/false; two texts that are both ISO timestamps (`2024-05-01`, `2024-05-01T09:00:00+02:00`,
  `...Z`; without a zone means UTC) compare as instants, other texts as texts (case-sensitive; `"00123"`
  is not `"123"`). Values that cannot be compared (a number and a word) pass no test but `ne`/`not_in`.
- `contains` holds for a text holding the value as a part (`"Gym Bag"` contains `"Bag"`), and for a
  list with an element equal to the value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from omniweave.activate.journeys.model import Condition, EventCount, PropertyFilter

FILTER_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists", "missing")
"""The operators of a property filter (docs/journeys.md)."""
NEGATED = {"ne": "eq", "not_in": "in", "missing": "exists"}

_ISO_START = re.compile(r"^\d{4}-\d{2}-\d{2}")
_MISSING = object()

Event = tuple[str, Any, Mapping[str, Any]]
"""One event of a person: (name, timestamp as epoch seconds, a datetime or an ISO text, properties)."""


def lookup(properties: Mapping[str, Any], name: str) -> list[Any]:
    """Every value `name` reaches in `properties` (a flat key first, else a dotted path fanning out over lists;
    `[]` after a part, as in `products[].cart_id`, says so and changes nothing), lists flattened and nulls
    dropped; empty when there is none."""
    if name in properties:
        found = [properties[name]]
    else:
        found = [properties]
        for part in name.split("."):
            part = part.removesuffix("[]")
            found = [v[part] for v in _flatten(found) if isinstance(v, Mapping) and part in v]
            if not found:
                return []
    return [v for v in _flatten(found) if v is not None]


_PATH_PART = re.compile(r"^[^.\[\]]+(\[\])?$")
PATH_HINT = (
    "a property name, or a dotted path into nested properties (`cart.id`, `properties.cart.id`) with `[]` after "
    "a list to match any of its elements (`products[].cart_id`)"
)


def path_problem(path: str) -> str | None:
    """What is wrong with a correlation path (None when it is well formed): parts separated by single dots, no
    spaces around a part, no brackets in a part but `[]` right after it (a list: any element), no index."""
    for index, part in enumerate(path.split(".")):
        if not part:
            why = "is empty (a dot at the start, at the end or twice)"
        elif part != part.strip():
            why = "has spaces around it"
        elif _PATH_PART.match(part):
            continue
        elif re.search(r"\[\d+\]", part):
            why = "has an index, which is not supported (`[]` matches any element of a list)"
        else:
            why = "has a bracket other than a `[]` at its end"
        return f"got {path!r}: part {index + 1} {part!r} {why}; expected {PATH_HINT}"
    return None


def normalize_path(path: str) -> str:
    """The path as `lookup` walks it on an event's properties: without `[]` marks and without a leading
    `properties.` (the event's properties are what is looked in)."""
    plain = ".".join(part.removesuffix("[]") for part in path.split("."))
    return plain.removeprefix("properties.") if plain != "properties" else plain


def correlation_values(properties: Mapping[str, Any], path: str) -> list[str]:
    """The correlation values `path` reaches in an event's properties, as texts (a number and its text are one
    value): the path as written first (a flat key may hold dots; a property may be named `properties`), then
    as `normalize_path` reads it. Every element of a list reached counts; mappings are not values."""
    found = lookup(properties, path)
    if not found and normalize_path(path) != path:
        found = lookup(properties, normalize_path(path))
    return [_text_of(v) for v in found if not isinstance(v, Mapping)]


def _text_of(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _flatten(values: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if isinstance(value, (list, tuple)):
            out += _flatten(value)
        else:
            out.append(value)
    return out


def _instant(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str) and _ISO_START.match(value):
        text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def comparable(left: Any, right: Any) -> tuple[Any, Any] | None:
    """`left` and `right` as two values of one kind that can be compared, or None when they cannot: booleans
    with booleans; a number with a number or a text holding one; a date with a date or an ISO text; two texts
    as instants when both are ISO timestamps, else as texts (so "00123" is not "123")."""
    if isinstance(left, bool) or isinstance(right, bool):
        return (left, right) if isinstance(left, bool) and isinstance(right, bool) else None
    if isinstance(left, (int, float)) or isinstance(right, (int, float)):
        a, b = _number(left), _number(right)
        return None if a is None or b is None else (a, b)
    if isinstance(left, date) or isinstance(right, date):
        ta, tb = _instant(left), _instant(right)
        return None if ta is None or tb is None else (ta, tb)
    if isinstance(left, str) and isinstance(right, str):
        ta, tb = _instant(left), _instant(right)
        return (ta, tb) if ta is not None and tb is not None else (left, right)
    return None


def _equal(left: Any, right: Any) -> bool:
    pair = comparable(left, right)
    return pair is not None and pair[0] == pair[1]


def _order(left: Any, right: Any, op: str) -> bool:
    pair = comparable(left, right)
    if pair is None or isinstance(pair[0], bool):
        return False
    a, b = pair
    if op == "gt":
        return bool(a > b)
    if op == "gte":
        return bool(a >= b)
    if op == "lt":
        return bool(a < b)
    return bool(a <= b)


def _contains(found: Any, value: Any) -> bool:
    if isinstance(found, str) and isinstance(value, str):
        return value in found
    return _equal(found, value)


def _passes(values: Sequence[Any], op: str, expected: Any) -> bool:
    if op in NEGATED:
        return not _passes(values, NEGATED[op], expected)
    if op == "exists":
        return bool(values)
    if op == "eq":
        if expected is None:
            return not values
        return any(_equal(v, expected) for v in values)
    if op == "in":
        options = list(expected) if isinstance(expected, (list, tuple)) else [expected]
        return any(_equal(v, o) for v in values for o in options)
    if op == "contains":
        return any(_contains(v, expected) for v in values)
    if op in ("gt", "gte", "lt", "lte"):
        return any(_order(v, expected, op) for v in values)
    raise ValueError(f"unknown filter operator {op!r}; expected one of {', '.join(FILTER_OPS)}")


def matches(filters: Iterable[PropertyFilter], properties: Mapping[str, Any] | None) -> bool:
    """Whether `properties` (an event's properties or a profile's traits) pass every filter (no filter: true)."""
    props = properties or {}
    return all(_passes(lookup(props, f.name), f.op, f.value) for f in filters)


def _seconds(stamp: Any) -> float:
    """An event's timestamp (epoch seconds, a datetime, or an ISO text) as epoch seconds."""
    moment = _instant(stamp) if isinstance(stamp, (str, date)) else None
    if moment is not None:
        return moment.timestamp()
    if _number(stamp) is None or isinstance(stamp, str):
        raise ValueError(f"expected an event timestamp (epoch seconds, datetime or ISO text); got {stamp!r}")
    return float(stamp)


def event_count(rule: EventCount, events: Iterable[Event], now: float) -> int:
    """How many of `events` are `rule.event` with `rule.where` in the window (`within` seconds up to `now`)."""
    count = 0
    for name, stamp, properties in events:
        if name != rule.event:
            continue
        at = _seconds(stamp)
        if at > now or (rule.within is not None and now - at > rule.within):
            continue
        if matches(rule.where, properties):
            count += 1
    return count


def holds(
    condition: Condition,
    traits: Mapping[str, Any] | None,
    events: Iterable[Event],
    trigger: Mapping[str, Any] | None,
    segments: Collection[str],
    now: float,
) -> bool:
    """Whether `condition` holds for a person: `traits` (the profile), `events` (the person's recent events as
    (name, timestamp, properties)), `trigger` (the properties of the event that started the run), `segments`
    (the ids of the segments the person is in), at `now` (epoch seconds). Every part must hold."""
    if not matches(condition.traits, traits) or not matches(condition.trigger, trigger):
        return False
    if any(s not in segments for s in condition.in_segments):
        return False
    if any(s in segments for s in condition.not_in_segments):
        return False
    if condition.events:
        history = list(events)
        for rule in condition.events:
            count = event_count(rule, history, now)
            if (rule.none and count) or (not rule.none and count < rule.min_count):
                return False
    return True


__all__ = [
    "FILTER_OPS",
    "PATH_HINT",
    "Event",
    "comparable",
    "correlation_values",
    "event_count",
    "holds",
    "lookup",
    "matches",
    "normalize_path",
    "path_problem",
]
