"""Segment conditions evaluated in plain Python, for one person at a time.

The near-real-time path re-evaluates a person's memberships each time one of their events arrives,
without a query engine: it keeps the person's profile row and a count per behaviour condition, and
asks `condition_holds`; `event_matches` says whether the arriving event counts for a behaviour.
The answers must be exactly those of the batch compilation to Ibis (segments/service/evaluate.py, run on
DuckDB), which tests/segments/test_evaluator.py checks on the demo world and on hand-made edge cases:

- every leaf is true or false, never NULL: a comparison with a NULL trait or property is false,
  and so `not` of it is true (`ne` and `not_in` included);
- a property is compared as the text DuckDB's `json_extract_string` gives for `$.KEY` (dots nest,
  `[n]` / `[#-n]` index arrays): a string as it is, true/false, a number as DuckDB writes it, an
  object or array as compact JSON, NULL for null, absent, or a document that is not an object;
  then as lower-cased text against true/false, as a number (DuckDB's cast of the text), or as text;
- floats order as DuckDB orders them: NaN equals NaN and is above every other number.

A numeric filter on a property whose text is not a number is NULL, so false (the compiled query
uses TRY_CAST, as Spark's cast behaves). A `properties` text that is not valid JSON makes DuckDB's
json_extract_string raise; here, as on Spark, every property of it is NULL (the event log only
holds valid JSON).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, NoReturn

import orjson

from omniweave.segments import language as S

TYPE_EVENTS = {"Page Viewed": "page", "Screen Viewed": "screen", "Identified": "identify"}
"""As segments/service/evaluate.py: these names match a call type, not a track event's name."""

_SPACE = " \t\n\v\f\r"
_DIGITS = r"[0-9]+(?:_[0-9]+)*"
_NUMBER = re.compile(  # what DuckDB's CAST(text AS DOUBLE) accepts
    rf"[{_SPACE}]*\+?(?P<sign>-?)(?:(?P<num>(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?{_DIGITS})?)"
    rf"|(?P<inf>inf(?:inity)?)|(?P<nan>nan(?:\([^)]*\))?))[{_SPACE}]*",
    re.IGNORECASE | re.ASCII,
)
_INDEX = re.compile(r"(?P<back>#-|-)?(?P<n>[0-9]+)|#")


# --- events -------------------------------------------------------------------------------------


def event_matches(name: str, filters: Sequence[S.Filter], event: Mapping[str, Any]) -> bool:
    """Whether `event` is a `name` event (by call type for TYPE_EVENTS) that passes every filter.

    `event` has `type`, `event`, `channel` and `properties` (a mapping, its JSON text, or None),
    as a row of the event log; a mapping is read as the log would store it (its orjson text; one
    orjson refuses raises, as it cannot be logged either). A filter key that is no JSON path of one
    value (`*`, `[*]`, `a..b`, `a.`) raises SegmentError, as the query would fail."""
    if name in TYPE_EVENTS:
        if event.get("type") != TYPE_EVENTS[name]:
            return False
    elif event.get("event") != name:
        return False
    if not filters:
        return True
    document = _document(event.get("properties"))
    return all(_filter(f, event.get("channel") if f.key == "channel" else _extract(document, f.key)) for f in filters)


def _filter(f: S.Filter, text: str | None) -> bool:
    if f.op == "is_null":
        return (text is None) == bool(f.value)
    values = f.value if f.op in S.LIST_OPS else (f.value,)
    if text is None:
        return False
    column: Any
    if all(isinstance(v, bool) for v in values):
        column, values = text.lower(), tuple("true" if v else "false" for v in values)
    elif all(isinstance(v, (int, float)) for v in values):
        column, values = _cast_double(text), tuple(float(v) for v in values)
        if column is None:  # DuckDB raises here; Spark (and we) read NULL
            return False
    else:
        column, values = text, tuple(str(v) for v in values)
    return _compare(column, f.op, values if f.op in S.LIST_OPS else values[0])


def _cast_double(text: str) -> float | None:
    found = _NUMBER.fullmatch(text)
    if found is None:
        return None
    if found["nan"]:
        return math.nan
    if found["inf"]:
        return -math.inf if found["sign"] else math.inf
    return float(found["sign"] + found["num"].replace("_", ""))


class _Raw(str):
    """A JSON number or constant, kept as the text DuckDB writes for it."""


class _Object(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs: duplicates kept, the first one found (as yyjson)."""


def _number_text(literal: str) -> _Raw:
    if not any(c in literal for c in ".eE"):
        return _Raw(str(int(literal)))  # "-0" is 0; beyond 64 bits the digits as written
    value = float(literal)
    return _Raw(literal if math.isinf(value) else _double_text(value))


def _double_text(value: float) -> str:
    """A finite double as yyjson writes it: the shortest digits, in decimal when -6 < point <= 21, else 1.5e-7."""
    if value == 0:
        return "-0.0" if math.copysign(1, value) < 0 else "0.0"
    _, digits, exponent = Decimal(repr(abs(value))).as_tuple()
    point = len(digits) + int(exponent)  # the value is 0.DIGITS times 10 ** point
    significant = "".join(map(str, digits)).rstrip("0")
    sign = "-" if value < 0 else ""
    if -6 < point <= 21:
        if point <= 0:
            return f"{sign}0.{'0' * -point}{significant}"
        if point >= len(significant):
            return f"{sign}{significant}{'0' * (point - len(significant))}.0"
        return f"{sign}{significant[:point]}.{significant[point:]}"
    rest = f".{significant[1:]}" if len(significant) > 1 else ""
    return f"{sign}{significant[0]}{rest}e{point - 1}"


def _document(properties: Any) -> Any:
    """`properties` parsed as DuckDB reads the log's JSON text; None where it is NULL or not JSON."""
    if properties is None:
        return None
    text = properties if isinstance(properties, str) else orjson.dumps(properties or {}).decode()
    try:
        return json.loads(
            text, object_pairs_hook=_Object, parse_int=_number_text, parse_float=_number_text, parse_constant=_Raw
        )
    except ValueError:  # DuckDB raises on malformed JSON; Spark's get_json_object (and we) read NULL
        return None


@lru_cache(maxsize=256)
def _path(key: str) -> tuple[str | tuple[bool, int], ...]:
    """DuckDB's JSON path `$.key` as steps: a key, or (from the back, n) for an array index.

    Keys are separated by dots, may be quoted ("a.b") and followed by indexes [n], [-n], [#-n];
    what DuckDB refuses, or reads as several values (*, [*], ..), is refused."""
    steps: list[str | tuple[bool, int]] = []
    i = 0
    while True:
        if key.startswith('"', i):
            end = key.find('"', i + 1)
            if end <= i + 1:
                _bad_path(key)
            steps.append(key[i + 1 : end])
            i = end + 1
        else:
            end = i
            while end < len(key) and key[end] not in ".[":
                end += 1
            if end == i or key[i:end] == "*":
                _bad_path(key)
            steps.append(key[i:end])
            i = end
        while key.startswith("[", i):
            end = key.find("]", i)
            index = _INDEX.fullmatch(key[i + 1 : end]) if end > 0 else None
            if index is None:
                _bad_path(key)
            n = int(index["n"] or 0)
            steps.append((index["n"] is None or (index["back"] is not None and n > 0), n))
            i = end + 1
        if i == len(key):
            return tuple(steps)
        if key[i] != ".":
            _bad_path(key)
        i += 1


def _bad_path(key: str) -> NoReturn:
    raise S.SegmentError("filter", [(key, 'not a JSON path of one value DuckDB reads (a.b, a[0], a[#-1], "a.b")')])


def _extract(document: Any, key: str) -> str | None:
    """json_extract_string(document, '$.' || key)."""
    value = document
    for step in _path(key):
        if isinstance(step, str):
            if not isinstance(value, _Object):
                return None
            value = next((v for k, v in value if k == step), None)
        else:
            if not isinstance(value, list) or isinstance(value, _Object):
                return None
            from_back, n = step
            i = len(value) - n if from_back else n
            if not 0 <= i < len(value):
                return None
            value = value[i]
    if value is None:
        return None
    return str(value) if isinstance(value, str) else _json_text(value)


def _json_text(value: Any) -> str:
    if isinstance(value, _Raw):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, _Object):
        return "{" + ",".join(f"{_json_text(k)}:{_json_text(v)}" for k, v in value) + "}"
    return "[" + ",".join(_json_text(v) for v in value) + "]"


# --- comparisons, as DuckDB makes them ------------------------------------------------------------


def _key(value: Any) -> Any:
    if isinstance(value, float) and not isinstance(value, bool):
        return (1, 0.0) if math.isnan(value) else (0, value)
    if isinstance(value, int) and not isinstance(value, bool):
        return (0, value)
    return value


def _compare(value: Any, op: str, other: Any) -> bool:
    """`value OP other` for non-NULL `value`; `other` a tuple for in / not_in."""
    if op in ("in", "not_in"):
        found = any(_key(value) == _key(v) for v in other)
        return found if op == "in" else not found
    a, b = _key(value), _key(other)
    return {"eq": a == b, "ne": a != b, "gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]


# --- the tree -----------------------------------------------------------------------------------


def condition_holds(
    node: S.Condition,
    traits: Mapping[str, Any],
    counts: Mapping[S.Behaviour, int],
    now: datetime,
    segments: Mapping[str, S.Segment],
    person_id: str,
) -> bool:
    """Whether one person satisfies `node`, as segments.service.evaluate.Compiler would find.

    `traits` is the person's row of `profiles` (timestamps as datetimes, lists as lists), `counts`
    the number of events counted for each behaviour condition (its window and `then_not`
    applied; absent is 0), `now` the evaluation time, `segments` those `in_segment` may name.
    A definition that does not compile against the profiles raises SegmentError as the compiler
    does, where the person's values show it (an unknown trait always does). A person the profiles
    do not hold is no member of anything in the batch evaluation: do not ask about them (an empty
    `traits` raises at the first trait condition)."""
    now = (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(UTC)
    return _holds(node, traits, counts, now, segments, person_id, "where", ())


def _holds(
    node: S.Condition,
    traits: Mapping[str, Any],
    counts: Mapping[S.Behaviour, int],
    now: datetime,
    segments: Mapping[str, S.Segment],
    person_id: str,
    path: str,
    trail: tuple[str, ...],
) -> bool:
    if isinstance(node, S.All):
        return all(
            _holds(c, traits, counts, now, segments, person_id, f"{path}.all[{i}]", trail)
            for i, c in enumerate(node.children)
        )
    if isinstance(node, S.AnyOf):
        return any(
            _holds(c, traits, counts, now, segments, person_id, f"{path}.any[{i}]", trail)
            for i, c in enumerate(node.children)
        )
    if isinstance(node, S.Not):
        return not _holds(node.child, traits, counts, now, segments, person_id, f"{path}.not", trail)
    if isinstance(node, S.Behaviour):
        count = counts.get(node, 0)
        return {"at_least": count >= node.count, "at_most": count <= node.count, "exactly": count == node.count}[
            node.count_op
        ]
    if isinstance(node, S.InSegment):
        where = f"{path}.in_segment"
        if node.segment_id in trail:
            raise S.SegmentError(trail[0], [(where, "in_segment cycle: " + " -> ".join((*trail, node.segment_id)))])
        if node.segment_id not in segments:
            raise S.SegmentError(trail[0] if trail else "segment", [(where, f"unknown segment {node.segment_id!r}")])
        return _holds(
            segments[node.segment_id].where,
            traits,
            counts,
            now,
            segments,
            person_id,
            f"{where}({node.segment_id})",
            (*trail, node.segment_id),
        )
    if isinstance(node, S.Bucket):
        return node.low <= S.bucket_of(node.salt, person_id) < node.high
    return _trait(node, traits, now, path)


def _trait(t: S.Trait, traits: Mapping[str, Any], now: datetime, path: str) -> bool:
    if t.name not in traits:
        raise S.SegmentError(
            "segment",
            [
                (
                    f"{path}.trait",
                    f"unknown trait {t.name!r}; the profile has: "
                    + ", ".join(k for k in traits if not k.startswith("_")),
                )
            ],
        )
    value = traits[t.name]
    where = f"{path}.{t.op}"
    if t.op == "is_null":
        empty = value is None or (isinstance(value, (list, tuple)) and len(value) == 0)
        return empty == bool(t.value)
    if t.op == "contains":
        if value is None:
            return False
        if not isinstance(value, (list, tuple)):
            _problem(where, f"contains needs a list trait; {t.name!r} is not a list")
        return any(v is not None and _compare(v, "eq", _literal(v, t.value, where)) for v in value)
    if value is None:
        return False  # every comparison with NULL is NULL, read as false
    if isinstance(value, (list, tuple, dict)):
        _problem(where, f"{t.op} compares one value; {t.name!r} is a list or struct (use contains or is_null)")
    if t.op in ("before_days_ago", "within_days"):
        at = S.moment_of(value) if isinstance(value, date) else None
        if at is None:
            _problem(where, f"{t.op} needs a timestamp trait; {t.name!r} is {type(value).__name__}")
        moment = now - timedelta(days=float(t.value))
        return at < moment if t.op == "before_days_ago" else at >= moment
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # as the compiler's UTC timestamps
    if t.op in S.LIST_OPS or t.op == "between":
        values = tuple(_literal(value, v, where) for v in t.value)
        if t.op == "between":
            return _compare(value, "gte", values[0]) and _compare(value, "lte", values[1])
        return _compare(value, t.op, values)
    return _compare(value, t.op, _literal(value, t.value, where))


def _literal(sample: Any, value: Any, where: str) -> Any:
    """`value` as the type of the trait's value `sample` (segments.service.evaluate._literal), or a problem."""
    if isinstance(sample, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(sample, (int, float)):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return value
    elif isinstance(sample, date):
        moment = S.moment_of(value)
        if moment is not None:
            if isinstance(sample, datetime):
                return moment
            return moment.date()
    elif isinstance(sample, str):
        if isinstance(value, str):
            return value
    else:
        return value
    _problem(where, f"expected a value of the trait's type ({type(sample).__name__}); got {value!r}")


def _problem(where: str, message: str) -> NoReturn:
    raise S.SegmentError("segment", [(where, message)])
