"""Journey files: parsed and validated into the model (`journeys/model.py`), every problem at once.

`parse_journey(document, source, messages=...)` turns a mapping (from a YAML or TOML file, an API body or
a stored version) into a `Journey`, or raises `JourneyInvalid` listing every problem, each with its path
(`steps.push.send.channel`), what was received and what is allowed, the way
`segments.language.parse_segment` does. Beyond the shape of each field it checks the graph: every target
names a step, every step is reachable from `start`, every step has a way to an `exit`, and no cycle can
loop without waiting (a `wait` of more than 0 s, or a `wait_for` with a timeout of more than 0 s; a
`wait_until` window does not count: it passes at once inside the window).

`journey_to_dict` gives the canonical JSON-able form (durations in seconds, filters as
`{name: {op: value}}`), `parse_journey(journey_to_dict(j)) == j`; `checksum` hashes it to tell versions
apart. `removed_steps` and `StepMapping` serve publishing: people waiting at a step the new version
removes move only by an explicit mapping old step -> new step. Pure: no I/O (the service reads files).
The format is in docs/journeys.md, "Journey files".
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, TypeGuard
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from omniweave.activate.journeys.conditions import FILTER_OPS, PATH_HINT, normalize_path, path_problem
from omniweave.activate.journeys.model import (
    Action,
    Branch,
    BranchArm,
    CallWebhook,
    Condition,
    Entry,
    EventCount,
    Exit,
    Goal,
    IssueCoupon,
    Journey,
    PropertyFilter,
    ReEntry,
    Send,
    Split,
    Step,
    UpdateTrait,
    Wait,
    WaitForEvent,
    WaitUntilWindow,
)
from omniweave.errors import InputError

CHANNELS = ("email", "sms", "whatsapp", "push", "webhook", "print", "ads", "preferred")
"""The channels a send step may name (`preferred`: the person's preferred messaging channel)."""
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
STEP_KINDS = (
    "wait",
    "wait_until",
    "wait_for",
    "branch",
    "split",
    "send",
    "issue_coupon",
    "update_trait",
    "webhook",
    "exit",
)
ENTRY_KINDS = ("event", "segment_entered", "segment_exited", "date", "api")
RE_ENTRY_MODES = ("never", "always", "after")
TOP_KEYS = (
    "name",
    "description",
    "campaign",
    "class",
    "timezone",
    "entry",
    "re_entry",
    "holdout",
    "goal",
    "start",
    "steps",
    "version",
)
DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}

NAME = re.compile(r"^[a-z0-9_]{1,100}$")
STEP_ID = re.compile(r"^[A-Za-z0-9_]{1,100}$")
CLASS_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
ARM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,99}$")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?[smhdw])+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")

Problems = list[tuple[str, str]]


class JourneyInvalid(InputError):
    """A journey definition with problems: `problems` lists each as (path, message)."""

    def __init__(self, source: str, problems: Sequence[tuple[str, str]]):
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  {path or '(top)'}: {message}" for path, message in self.problems)
        super().__init__(f"journey {source}: {len(self.problems)} problem(s):\n{lines}")


# --- small values ----------------------------------------------------------------------------------------


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_duration(value: Any) -> float:
    """`90s`, `15m`, `1h`, `2d`, `1w` (parts may be joined: `1h30m`) or a number of seconds, as seconds;
    ValueError saying what is allowed otherwise."""
    if _is_number(value) and value >= 0:
        return float(value)
    if isinstance(value, str) and _DURATION.match(value.strip()):
        return sum(float(n) * DURATION_UNITS[u] for n, u in _DURATION_PART.findall(value.strip()))
    raise ValueError(f"expected a duration (90s, 15m, 1h, 2d, 1w, or a number of seconds >= 0); got {value!r}")


def _duration(raw: Any, path: str, problems: Problems, *, positive: bool = False) -> float | None:
    try:
        seconds = parse_duration(raw)
    except ValueError as exc:
        problems.append((path, str(exc)))
        return None
    if positive and seconds <= 0:
        problems.append((path, f"expected a duration longer than 0 s; got {raw!r}"))
        return None
    return seconds


def _text(raw: Any, path: str, problems: Problems, what: str = "a non-empty text") -> str | None:
    if isinstance(raw, str) and raw.strip():
        return raw
    problems.append((path, f"expected {what}; got {raw!r}"))
    return None


def _time(raw: Any, path: str, problems: Problems) -> str | None:
    if isinstance(raw, str) and _TIME.match(raw):
        return raw
    hint = " (quote it: YAML reads an unquoted 20:00 as a number)" if isinstance(raw, int) else ""
    problems.append((path, f'expected a local time "HH:MM" (00:00-23:59){hint}; got {raw!r}'))
    return None


def _timezone(raw: Any, path: str, problems: Problems) -> str | None:
    if isinstance(raw, str) and raw:
        try:
            ZoneInfo(raw)
            return raw
        except (ZoneInfoNotFoundError, ValueError):
            pass
    problems.append((path, f"expected an IANA time zone (e.g. Europe/Berlin, UTC); got {raw!r}"))
    return None


def _only(raw: Mapping[str, Any], allowed: Collection[str], path: str, problems: Problems) -> None:
    for key in raw:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            problems.append((where, f"unknown field; allowed: {', '.join(sorted(allowed))}"))


def _mapping(raw: Any, path: str, problems: Problems, what: str) -> Mapping[str, Any] | None:
    if isinstance(raw, Mapping):
        return raw
    problems.append((path, f"expected {what}; got {raw!r}"))
    return None


def _plain(value: Any) -> Any:
    """A filter or trait value as a JSON-able, hashable value (dates as ISO texts, lists as tuples)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return value


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool, date)) or _is_number(value)


def _names(raw: Any, path: str, problems: Problems, what: str) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items or not all(isinstance(i, str) and i for i in items):
        problems.append((path, f"expected {what} or a non-empty list of them; got {raw!r}"))
        return ()
    return tuple(items)


# --- filters and conditions ------------------------------------------------------------------------------


def _filters(raw: Any, path: str, problems: Problems) -> tuple[PropertyFilter, ...]:
    """`{prop: value}` (eq) or `{prop: {op: value, ...}}` as filters, in the order written."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        problems.append((path, f"expected filters {{property: value}} or {{property: {{op: value}}}}; got {raw!r}"))
        return ()
    out: list[PropertyFilter] = []
    for name, spec in raw.items():
        where = f"{path}.{name}"
        if not isinstance(name, str) or not name:
            problems.append((where, f"expected a property name; got {name!r}"))
            continue
        if not isinstance(spec, Mapping):
            if _scalar(spec):
                out.append(PropertyFilter(name, "eq", _plain(spec)))
            else:
                problems.append((where, f"expected a value or {{op: value}}; got {spec!r}"))
            continue
        if not spec:
            problems.append((where, f"expected at least one operator of {', '.join(FILTER_OPS)}"))
        for op, value in spec.items():
            made = _filter(name, op, value, f"{where}.{op}", problems)
            if made is not None:
                out.append(made)
    return tuple(out)


def _filter(name: str, op: Any, value: Any, path: str, problems: Problems) -> PropertyFilter | None:
    if op not in FILTER_OPS:
        problems.append((path, f"unknown operator {op!r}; expected one of {', '.join(FILTER_OPS)}"))
        return None
    if op in ("exists", "missing"):
        if not isinstance(value, bool):
            problems.append((path, f"expected true or false; got {value!r}"))
            return None
        present = (op == "exists") == value
        return PropertyFilter(name, "exists" if present else "missing")
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value or not all(_scalar(v) for v in value):
            problems.append((path, f"expected a non-empty list of values; got {value!r}"))
            return None
        return PropertyFilter(name, op, _plain(value))
    if op in ("gt", "gte", "lt", "lte", "contains") and (
        value is None or not _scalar(value) or isinstance(value, bool)
    ):
        problems.append((path, f"expected a number, a text or a date; got {value!r}"))
        return None
    if not _scalar(value):
        problems.append((path, f"expected one value (text, number, true/false, date, null); got {value!r}"))
        return None
    return PropertyFilter(name, op, _plain(value))


def _event_count(raw: Any, path: str, problems: Problems) -> EventCount | None:
    spec = _mapping(raw, path, problems, "{event: NAME, where, within, min_count, none}")
    if spec is None:
        return None
    _only(spec, ("event", "where", "within", "min_count", "none"), path, problems)
    event = _text(spec.get("event"), f"{path}.event", problems, "an event name")
    where = _filters(spec.get("where"), f"{path}.where", problems)
    within = None
    if spec.get("within") is not None:
        within = _duration(spec["within"], f"{path}.within", problems, positive=True)
    none = spec.get("none", False)
    if not isinstance(none, bool):
        problems.append((f"{path}.none", f"expected true or false; got {none!r}"))
        return None
    min_count = spec.get("min_count", 1)
    if none and "min_count" in spec:
        problems.append((f"{path}.min_count", "none: true means zero times; leave min_count out"))
        return None
    if not isinstance(min_count, int) or isinstance(min_count, bool) or min_count < 1:
        problems.append((f"{path}.min_count", f"expected a whole number >= 1; got {min_count!r}"))
        return None
    if event is None or (spec.get("within") is not None and within is None):
        return None
    return EventCount(event, where, within, 0 if none else min_count, none)


CONDITION_KEYS = ("traits", "events", "trigger", "in_segment", "not_in_segment")


def _condition(raw: Any, path: str, problems: Problems) -> Condition | None:
    spec = _mapping(raw, path, problems, f"a condition (a mapping of {', '.join(CONDITION_KEYS)})")
    if spec is None:
        return None
    _only(spec, CONDITION_KEYS, path, problems)
    events: list[EventCount] = []
    raw_events = spec.get("events", [])
    if not isinstance(raw_events, list):
        problems.append(
            (f"{path}.events", f"expected a list of {{event, where, within, min_count, none}}; got {raw_events!r}")
        )
    else:
        for i, item in enumerate(raw_events):
            made = _event_count(item, f"{path}.events[{i}]", problems)
            if made is not None:
                events.append(made)
    return Condition(
        traits=_filters(spec.get("traits"), f"{path}.traits", problems),
        events=tuple(events),
        trigger=_filters(spec.get("trigger"), f"{path}.trigger", problems),
        in_segments=_names(spec["in_segment"], f"{path}.in_segment", problems, "a segment id")
        if "in_segment" in spec
        else (),
        not_in_segments=(
            _names(spec["not_in_segment"], f"{path}.not_in_segment", problems, "a segment id")
            if "not_in_segment" in spec
            else ()
        ),
    )


# --- entry, re-entry, goal -------------------------------------------------------------------------------


def _entry(raw: Any, problems: Problems) -> Entry | None:
    spec = _mapping(raw, "entry", problems, f"a mapping with one of {', '.join(ENTRY_KINDS)}")
    if spec is None:
        return None
    kinds = [k for k in ENTRY_KINDS if k in spec]
    if len(kinds) != 1:
        problems.append(
            ("entry", f"expected exactly one of {', '.join(ENTRY_KINDS)}; got {sorted(map(str, spec)) or 'none'}")
        )
        return None
    kind = kinds[0]
    if kind == "event":
        _only(spec, ("event", "where", "correlate"), "entry", problems)
        event = _text(spec["event"], "entry.event", problems, "an event name")
        where = _filters(spec.get("where"), "entry.where", problems)
        correlate = None
        if "correlate" in spec:
            correlate = _path(spec["correlate"], "entry.correlate", problems, trigger=True)
        return None if event is None else Entry("event", event=event, where=where, correlate=correlate)
    if kind in ("segment_entered", "segment_exited"):
        _only(spec, (kind,), "entry", problems)
        segment = _text(spec[kind], f"entry.{kind}", problems, "a segment id")
        return None if segment is None else Entry(kind, segment=segment)  # type: ignore[arg-type]
    if kind == "api":
        _only(spec, ("api",), "entry", problems)
        if spec["api"] is not True:
            problems.append(("entry.api", f"expected true; got {spec['api']!r}"))
            return None
        return Entry("api")
    _only(spec, ("date",), "entry", problems)
    date_spec = _mapping(spec["date"], "entry.date", problems, "{trait: NAME, yearly, offset, at}")
    if date_spec is None:
        return None
    _only(date_spec, ("trait", "yearly", "offset", "at"), "entry.date", problems)
    trait = _text(date_spec.get("trait"), "entry.date.trait", problems, "a date trait name")
    yearly = date_spec.get("yearly", False)
    if not isinstance(yearly, bool):
        problems.append(("entry.date.yearly", f"expected true or false; got {yearly!r}"))
    offset = _signed_duration(date_spec.get("offset", 0), "entry.date.offset", problems)
    at = _time(date_spec.get("at", "09:00"), "entry.date.at", problems)
    if trait is None or not isinstance(yearly, bool) or offset is None or at is None:
        return None
    return Entry("date", trait=trait, yearly=yearly, offset=offset, at=at)


def _signed_duration(raw: Any, path: str, problems: Problems) -> float | None:
    if isinstance(raw, str) and raw.strip().startswith("-"):
        seconds = _duration(raw.strip()[1:], path, problems)
        return None if seconds is None else -seconds
    if _is_number(raw):
        return float(raw)
    return _duration(raw, path, problems)


def _re_entry(raw: Any, problems: Problems) -> ReEntry | None:
    if isinstance(raw, str):
        raw = {"mode": raw}
    spec = _mapping(raw, "re_entry", problems, f"one of {', '.join(RE_ENTRY_MODES)} or {{mode, cooldown, max_entries}}")
    if spec is None:
        return None
    _only(spec, ("mode", "cooldown", "max_entries"), "re_entry", problems)
    mode = spec.get("mode", "never")
    ok = True
    if mode not in RE_ENTRY_MODES:
        problems.append(("re_entry.mode", f"expected one of {', '.join(RE_ENTRY_MODES)}; got {mode!r}"))
        ok = False
    cooldown = 0.0
    if mode == "after":
        if "cooldown" not in spec:
            problems.append(("re_entry.cooldown", "missing: mode 'after' needs a cooldown (e.g. 7d)"))
            ok = False
        else:
            seconds = _duration(spec["cooldown"], "re_entry.cooldown", problems, positive=True)
            ok = ok and seconds is not None
            cooldown = seconds or 0.0
    elif "cooldown" in spec:
        problems.append(("re_entry.cooldown", f"only mode 'after' takes a cooldown; mode is {mode!r}"))
        ok = False
    max_entries = spec.get("max_entries")
    if max_entries is not None and (
        not isinstance(max_entries, int) or isinstance(max_entries, bool) or max_entries < 1
    ):
        problems.append(("re_entry.max_entries", f"expected a whole number >= 1; got {max_entries!r}"))
        ok = False
    return ReEntry(mode, cooldown, max_entries) if ok else None


def _path(raw: Any, path: str, problems: Problems, *, trigger: bool = False) -> str | None:
    """A correlation path (`conditions.path_problem`); on the trigger's side (`trigger`) it must reach one value,
    so it goes through no list (`[]`)."""
    if not isinstance(raw, str) or not raw.strip():
        problems.append((path, f"expected {PATH_HINT}; got {raw!r}"))
        return None
    problem = path_problem(raw)
    if problem is None and trigger and "[]" in raw:
        problem = (
            f"got {raw!r}: the trigger's correlation value is one value, so its path goes through no list ([]); "
            "put the list path on the awaited event (correlate_as)"
        )
    if problem is not None:
        problems.append((path, problem))
        return None
    return raw


def _correlation(spec: Mapping[str, Any], path: str, problems: Problems) -> tuple[str | None, str | None]:
    correlate = correlate_as = None
    if "correlate" in spec:
        correlate = _path(spec["correlate"], f"{path}.correlate", problems, trigger=True)
    if "correlate_as" in spec:
        correlate_as = _path(spec["correlate_as"], f"{path}.correlate_as", problems)
        if "correlate" not in spec:
            problems.append((f"{path}.correlate_as", "correlate_as needs correlate (the trigger's property)"))
    return correlate, correlate_as


def _goal(raw: Any, problems: Problems) -> Goal | None:
    spec = _mapping(raw, "goal", problems, "{event: NAME, within: DURATION, where, correlate}")
    if spec is None:
        return None
    _only(spec, ("event", "within", "where", "correlate", "correlate_as"), "goal", problems)
    event = _text(spec.get("event"), "goal.event", problems, "an event name")
    within = None
    if "within" not in spec:
        problems.append(("goal.within", "missing: how long after entry the goal counts (e.g. 7d)"))
    else:
        within = _duration(spec["within"], "goal.within", problems, positive=True)
    where = _filters(spec.get("where"), "goal.where", problems)
    correlate, correlate_as = _correlation(spec, "goal", problems)
    if event is None or within is None:
        return None
    return Goal(event, within, where, correlate, correlate_as)


# --- steps -----------------------------------------------------------------------------------------------

_EXTRA: dict[str, tuple[str, ...]] = {
    "wait": ("next",),
    "wait_until": ("next",),
    "wait_for": ("on_event", "on_timeout"),
    "branch": (),
    "split": (),
    "send": ("next",),
    "issue_coupon": ("next",),
    "update_trait": ("next",),
    "webhook": ("next",),
    "exit": (),
}


def _target(spec: Mapping[str, Any], key: str, path: str, problems: Problems) -> str | None:
    if key not in spec:
        problems.append((f"{path}.{key}", "missing: the id of the step to go to"))
        return None
    return _step_ref(spec[key], f"{path}.{key}", problems)


def _step_ref(raw: Any, path: str, problems: Problems) -> str | None:
    if isinstance(raw, str) and STEP_ID.match(raw):
        return raw
    problems.append((path, f"expected a step id; got {raw!r}"))
    return None


def _step(step_id: str, raw: Any, path: str, problems: Problems, messages: Collection[str] | None) -> Step | None:
    spec = _mapping(raw, path, problems, f"a step (a mapping with one of {', '.join(STEP_KINDS)})")
    if spec is None:
        return None
    kinds = [k for k in STEP_KINDS if k in spec]
    if len(kinds) != 1:
        got = ", ".join(sorted(map(str, spec))) or "nothing"
        problems.append((path, f"expected exactly one step kind of {', '.join(STEP_KINDS)}; got {got}"))
        return None
    kind = kinds[0]
    common = ("label",) if kind == "exit" else ("label", "on_error")
    _only(spec, (kind, *_EXTRA[kind], *common), path, problems)
    label = spec.get("label")
    if label is not None and not isinstance(label, str):
        problems.append((f"{path}.label", f"expected a text; got {label!r}"))
        label = None
    on_error = _step_ref(spec["on_error"], f"{path}.on_error", problems) if "on_error" in spec else None
    before = len(problems)
    action = _action(kind, spec, path, problems, messages)
    if action is None or len(problems) > before:
        return None
    return Step(step_id, action, on_error, label)


def _action(
    kind: str, spec: Mapping[str, Any], path: str, problems: Problems, messages: Collection[str] | None
) -> Action | None:
    body, where = spec[kind], f"{path}.{kind}"
    if kind == "wait":
        seconds = _duration(body, where, problems)
        target = _target(spec, "next", path, problems)
        return None if seconds is None or target is None else Wait(seconds, target)
    if kind == "wait_until":
        return _wait_until(body, spec, where, path, problems)
    if kind == "wait_for":
        return _wait_for(body, spec, where, path, problems)
    if kind == "branch":
        return _branch(body, where, problems)
    if kind == "split":
        return _split(body, where, problems)
    if kind == "send":
        return _send(body, spec, where, path, problems, messages)
    if kind == "issue_coupon":
        pool = _mapping(body, where, problems, "{pool: NAME}")
        if pool is None:
            return None
        _only(pool, ("pool",), where, problems)
        name = _text(pool.get("pool"), f"{where}.pool", problems, "a coupon pool name")
        target = _target(spec, "next", path, problems)
        return None if name is None or target is None else IssueCoupon(name, target)
    if kind == "update_trait":
        return _update_trait(body, spec, where, path, problems)
    if kind == "webhook":
        return _webhook(body, spec, where, path, problems)
    reason = _text(body, where, problems, "an exit reason (e.g. converted, done)")
    return None if reason is None else Exit(reason)


def _wait_until(body: Any, spec: Mapping[str, Any], where: str, path: str, problems: Problems) -> Action | None:
    window = _mapping(body, where, problems, '{between: ["HH:MM", "HH:MM"], days: [mon, ...]}')
    target = _target(spec, "next", path, problems)
    if window is None:
        return None
    _only(window, ("between", "days"), where, problems)
    between = window.get("between")
    start = end = None
    if not isinstance(between, list) or len(between) != 2:
        problems.append((f"{where}.between", f'expected ["HH:MM", "HH:MM"] (start, end); got {between!r}'))
    else:
        start = _time(between[0], f"{where}.between[0]", problems)
        end = _time(between[1], f"{where}.between[1]", problems)
        if start is not None and start == end:
            problems.append((f"{where}.between", f"expected a window: start and end are both {start}"))
            start = None
    days = _days(window.get("days", list(DAYS)), f"{where}.days", problems)
    if start is None or end is None or days is None or target is None:
        return None
    return WaitUntilWindow(start, end, days, target)


def _days(raw: Any, path: str, problems: Problems) -> tuple[str, ...] | None:
    if not isinstance(raw, list) or not raw:
        problems.append((path, f"expected a non-empty list of {', '.join(DAYS)}; got {raw!r}"))
        return None
    bad = [d for d in raw if d not in DAYS]
    if bad:
        problems.append((path, f"unknown day(s) {', '.join(map(repr, bad))}; expected {', '.join(DAYS)}"))
        return None
    if len(set(raw)) != len(raw):
        problems.append((path, f"a day is named twice: {raw!r}"))
        return None
    return tuple(d for d in DAYS if d in raw)


def _wait_for(body: Any, spec: Mapping[str, Any], where: str, path: str, problems: Problems) -> Action | None:
    wait = _mapping(body, where, problems, "{event: NAME, where, correlate, timeout} or {segment_entered: ID, timeout}")
    on_event = _target(spec, "on_event", path, problems)
    on_timeout = _target(spec, "on_timeout", path, problems)
    if wait is None:
        return None
    kinds = [k for k in ("event", "segment_entered", "segment_exited") if k in wait]
    if len(kinds) != 1:
        problems.append(
            (where, f"expected exactly one of event, segment_entered, segment_exited; got {sorted(map(str, wait))}")
        )
        return None
    kind = kinds[0]
    allowed = ("event", "where", "correlate", "correlate_as", "timeout") if kind == "event" else (kind, "timeout")
    _only(wait, allowed, where, problems)
    timeout = None
    if "timeout" not in wait:
        problems.append(
            (f"{where}.timeout", "missing: how long to wait before on_timeout (e.g. 1d, or 0s to look once)")
        )
    else:
        timeout = _duration(wait["timeout"], f"{where}.timeout", problems)
    if kind == "event":
        event = _text(wait["event"], f"{where}.event", problems, "an event name")
        filters = _filters(wait.get("where"), f"{where}.where", problems)
        correlate, correlate_as = _correlation(wait, where, problems)
        if event is None or timeout is None or on_event is None or on_timeout is None:
            return None
        return WaitForEvent(timeout, on_event, on_timeout, event, filters, correlate, correlate_as)
    segment = _text(wait[kind], f"{where}.{kind}", problems, "a segment id")
    if segment is None or timeout is None or on_event is None or on_timeout is None:
        return None
    change: Literal["entered", "exited"] = "entered" if kind == "segment_entered" else "exited"
    return WaitForEvent(timeout, on_event, on_timeout, segment=segment, segment_change=change)


def _branch(body: Any, where: str, problems: Problems) -> Action | None:
    shape = "a list of {if: CONDITION, next: STEP} arms ending with {else: STEP}"
    if not isinstance(body, list) or not body:
        problems.append((where, f"expected {shape}; got {body!r}"))
        return None
    before = len(problems)
    arms: list[BranchArm] = []
    otherwise = None
    for i, item in enumerate(body):
        at = f"{where}[{i}]"
        arm = _mapping(item, at, problems, "{if: CONDITION, next: STEP} or {else: STEP}")
        if arm is None:
            continue
        if "else" in arm:
            _only(arm, ("else",), at, problems)
            if i != len(body) - 1:
                problems.append((at, "the else arm must come last"))
            otherwise = _step_ref(arm["else"], f"{at}.else", problems)
            continue
        _only(arm, ("if", "next"), at, problems)
        if "if" not in arm:
            problems.append((f"{at}.if", "missing: the condition of this arm (or write {else: STEP})"))
            continue
        condition = _condition(arm["if"], f"{at}.if", problems)
        target = _target(arm, "next", at, problems)
        if condition is not None and target is not None:
            arms.append(BranchArm(condition, target))
    if not any(isinstance(a, Mapping) and "else" in a for a in body):
        problems.append((where, "missing: a last arm {else: STEP} (where a run goes when no condition holds)"))
    elif not any(isinstance(a, Mapping) and "else" not in a for a in body):
        problems.append((where, "expected at least one {if: CONDITION, next: STEP} arm before else"))
    if len(problems) > before or otherwise is None:
        return None
    return Branch(tuple(arms), otherwise)


def _split(body: Any, where: str, problems: Problems) -> Action | None:
    spec = _mapping(body, where, problems, "{ARM: {weight: W, next: STEP}, ...}")
    if spec is None:
        return None
    if len(spec) < 2:
        problems.append((where, f"expected at least two arms; got {len(spec)}"))
    arms: list[tuple[str, float, str]] = []
    ok = len(spec) >= 2
    for name, arm_raw in spec.items():
        at = f"{where}.{name}"
        if not isinstance(name, str) or not ARM_NAME.match(name):
            problems.append((at, f"expected an arm name of 1-40 letters, digits, _ or -; got {name!r}"))
            ok = False
        arm = _mapping(arm_raw, at, problems, "{weight: W, next: STEP}")
        if arm is None:
            ok = False
            continue
        _only(arm, ("weight", "next"), at, problems)
        weight = arm.get("weight")
        if not _is_number(weight) or weight <= 0:
            problems.append((f"{at}.weight", f"expected a number > 0; got {weight!r}"))
            ok = False
        target = _target(arm, "next", at, problems)
        if target is None:
            ok = False
        elif ok:
            arms.append((str(name), float(weight), target))  # type: ignore[arg-type]
    return Split(tuple(arms)) if ok else None


def _send(
    body: Any,
    spec: Mapping[str, Any],
    where: str,
    path: str,
    problems: Problems,
    messages: Collection[str] | None,
) -> Action | None:
    send = _mapping(body, where, problems, "{message: NAME, channel: CHANNEL, fallback: [...]}")
    target = _target(spec, "next", path, problems)
    if send is None:
        return None
    _only(send, ("message", "channel", "fallback", "class"), where, problems)
    message = _text(send.get("message"), f"{where}.message", problems, "a message name")
    if message is not None and messages is not None and message not in messages:
        known = ", ".join(sorted(messages)) or "none"
        problems.append((f"{where}.message", f"unknown message {message!r}; known: {known}"))
        message = None
    channel = send.get("channel")
    if channel not in CHANNELS:
        problems.append((f"{where}.channel", f"expected one of {', '.join(CHANNELS)}; got {channel!r}"))
        channel = None
    fallback = send.get("fallback", [])
    ok = True
    if not isinstance(fallback, list) or any(c not in CHANNELS or c == "preferred" for c in fallback):
        options = ", ".join(c for c in CHANNELS if c != "preferred")
        problems.append((f"{where}.fallback", f"expected a list of channels ({options}); got {fallback!r}"))
        ok = False
    elif len(set(fallback)) != len(fallback) or channel in fallback:
        problems.append((f"{where}.fallback", f"a channel is named twice (channel {channel!r}, fallback {fallback!r})"))
        ok = False
    message_class = send.get("class")
    if message_class is not None and (not isinstance(message_class, str) or not CLASS_NAME.match(message_class)):
        problems.append(
            (f"{where}.class", f"expected a message class (promotional, transactional, ...); got {message_class!r}")
        )
        ok = False
    if message is None or channel is None or target is None or not ok:
        return None
    return Send(message, channel, target, tuple(fallback), message_class)


def _update_trait(body: Any, spec: Mapping[str, Any], where: str, path: str, problems: Problems) -> Action | None:
    update = _mapping(body, where, problems, "{trait: NAME, value: VALUE}")
    target = _target(spec, "next", path, problems)
    if update is None:
        return None
    _only(update, ("trait", "value"), where, problems)
    trait = _text(update.get("trait"), f"{where}.trait", problems, "a trait name")
    if "value" not in update:
        problems.append((f"{where}.value", "missing: the value to set (null clears the trait)"))
        return None
    value = update["value"]
    if not (_scalar(value) or (isinstance(value, list) and all(_scalar(v) for v in value))):
        problems.append(
            (f"{where}.value", f"expected a text, number, true/false, date, null or a list of them; got {value!r}")
        )
        return None
    return None if trait is None or target is None else UpdateTrait(trait, _plain(value), target)


def _webhook(body: Any, spec: Mapping[str, Any], where: str, path: str, problems: Problems) -> Action | None:
    hook = _mapping(body, where, problems, "{url: URL, secret_env: VARIABLE}")
    target = _target(spec, "next", path, problems)
    if hook is None:
        return None
    _only(hook, ("url", "secret_env"), where, problems)
    url = hook.get("url")
    if not isinstance(url, str) or not _URL.match(url):
        problems.append((f"{where}.url", f"expected an https:// (or http://) URL; got {url!r}"))
        url = None
    secret_env = hook.get("secret_env")
    if secret_env is not None and (not isinstance(secret_env, str) or not ENV_NAME.match(secret_env)):
        problems.append(
            (f"{where}.secret_env", f"expected an environment variable name (A-Z, 0-9, _); got {secret_env!r}")
        )
        return None
    return None if url is None or target is None else CallWebhook(url, target, secret_env)


# --- the graph -------------------------------------------------------------------------------------------


def _is_wait(step: Step) -> bool:
    """Whether a run taking this step parks for some time (a cycle through it cannot spin)."""
    action = step.action
    return (isinstance(action, Wait) and action.seconds > 0) or (
        isinstance(action, WaitForEvent) and action.timeout > 0
    )


def _graph_problems(start: str | None, steps: Mapping[str, Step], declared: Sequence[str], problems: Problems) -> None:
    """Targets that name no step; and, when every step parsed, unreachable steps, steps with no way to an
    exit and cycles with no wait."""
    dangling = False
    for step in steps.values():
        for key, target in _labelled_targets(step):
            if target not in declared:
                dangling = True
                problems.append((f"steps.{step.id}.{key}", f"no step {target!r}; steps: {', '.join(declared)}"))
    if start is not None and start not in declared:
        problems.append(("start", f"no step {start!r}; steps: {', '.join(declared) or 'none'}"))
        return
    if start is None or len(steps) != len(declared):
        return  # the paths below would guess at what the broken steps meant
    reached = _reach([start], lambda s: steps[s].targets() if s in steps else ())
    for step_id in steps:
        if step_id not in reached:
            problems.append((f"steps.{step_id}", f"unreachable: no path from start {start!r} leads here"))
    if dangling:
        return  # the paths below would follow the broken targets
    backward: dict[str, list[str]] = {s: [] for s in steps}
    for step in steps.values():
        for target in step.targets():
            backward[target].append(step.id)
    exits = [s for s, step in steps.items() if isinstance(step.action, Exit)]
    ending = _reach(exits, lambda s: backward[s])
    for step_id in steps:
        if step_id in reached and step_id not in ending:
            problems.append((f"steps.{step_id}", "no way to an end: no path from here reaches an exit step"))
    instant = {s: [] if _is_wait(step) else list(step.targets()) for s, step in steps.items() if s in reached}
    order = {s: i for i, s in enumerate(steps)}
    for cycle in sorted(_cycles(instant), key=lambda c: order[c[0]]):
        shown = " -> ".join([*cycle, cycle[0]])
        problems.append(
            (f"steps.{cycle[0]}", f"a cycle with no wait: {shown} could loop forever; put a wait (> 0s) on it")
        )


def _labelled_targets(step: Step) -> list[tuple[str, str]]:
    a = step.action
    out: list[tuple[str, str]] = []
    if isinstance(a, WaitForEvent):
        out += [("on_event", a.on_event), ("on_timeout", a.on_timeout)]
    elif isinstance(a, Branch):
        out += [(f"branch[{i}].next", arm.next) for i, arm in enumerate(a.arms)]
        out.append((f"branch[{len(a.arms)}].else", a.otherwise))
    elif isinstance(a, Split):
        out += [(f"split.{name}.next", target) for name, _, target in a.arms]
    elif not isinstance(a, Exit):
        out.append(("next", a.next))
    if step.on_error:
        out.append(("on_error", step.on_error))
    return out


def _reach(roots: Sequence[str], follow: Any) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        todo.extend(follow(node))
    return seen


def _cycles(graph: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """The cycles of `graph` as one path each, one per strongly connected component (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            successors = [t for t in graph[node] if t in graph]
            if i < len(successors):
                work.append((node, i + 1))
                nxt = successors[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return [_cycle_path(c, graph) for c in components]


def _cycle_path(component: list[str], graph: Mapping[str, Sequence[str]]) -> list[str]:
    """One cycle through a strongly connected component, starting at its step that comes first in the file."""
    members = set(component)
    first = next(s for s in graph if s in members)
    parents: dict[str, str] = {}
    todo, seen = [first], {first}
    while todo:  # breadth-first back to `first`
        node = todo.pop(0)
        for t in graph[node]:
            if t == first:
                out = [node]
                while out[-1] != first:
                    out.append(parents[out[-1]])
                return list(reversed(out))
            if t in members and t not in seen:
                seen.add(t)
                parents[t] = node
                todo.append(t)
    return [first]


# --- the journey -----------------------------------------------------------------------------------------


def parse_journey(
    document: Any,
    source: str = "<journey>",
    *,
    default_name: str | None = None,
    messages: Collection[str] | None = None,
    message_classes: Collection[str] | None = None,
) -> Journey:
    """`document` (a mapping, the format of docs/journeys.md) as a Journey; JourneyInvalid with every problem.

    `default_name` is the file's stem: the name defaults to it and must equal it. `messages`, when given, are
    the known message names a send may use; `message_classes`, when given, the classes the policy knows."""
    problems: Problems = []
    if not isinstance(document, Mapping):
        raise JourneyInvalid(
            source, [("", f"expected a mapping with name, entry, start, steps; got {type(document).__name__}")]
        )
    _only(document, TOP_KEYS, "", problems)
    name = document.get("name", default_name)
    if not isinstance(name, str) or not NAME.match(name):
        problems.append(("name", f"expected 1-100 lower-case letters, digits or _; got {name!r}"))
    elif default_name is not None and name != default_name:
        problems.append(("name", f"expected the file's name {default_name!r}; got {name!r}"))
    description = document.get("description", "")
    if not isinstance(description, str):
        problems.append(("description", f"expected a text; got {description!r}"))
    campaign = document.get("campaign", name)
    if not isinstance(campaign, str) or not campaign.strip():
        problems.append(("campaign", f"expected a non-empty text; got {campaign!r}"))
    message_class = document.get("class", "promotional")
    _check_class(message_class, "class", message_classes, problems)
    timezone = _timezone(document.get("timezone", "UTC"), "timezone", problems)
    entry = None
    if "entry" not in document:
        problems.append(("entry", f"missing: how people enter (one of {', '.join(ENTRY_KINDS)})"))
    else:
        entry = _entry(document["entry"], problems)
    re_entry = _re_entry(document.get("re_entry", "never"), problems)
    holdout = document.get("holdout", 0.0)
    if not _is_number(holdout) or not 0 <= holdout < 1:
        problems.append(("holdout", f"expected a share from 0 up to (not including) 1, e.g. 0.1; got {holdout!r}"))
    goal = _goal(document["goal"], problems) if document.get("goal") is not None else None
    version = document.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 1):
        problems.append(("version", f"expected a whole number >= 1 (set by publishing); got {version!r}"))
    start = document.get("start")
    if start is None:
        problems.append(("start", "missing: the id of the first step"))
    else:
        start = _step_ref(start, "start", problems)
    steps = _steps(document.get("steps"), problems, messages)
    for step in steps.values():
        if isinstance(step.action, Send) and step.action.message_class is not None:
            _check_class(step.action.message_class, f"steps.{step.id}.send.class", message_classes, problems)
    raw_steps = document.get("steps")
    if isinstance(raw_steps, Mapping) and raw_steps:
        _graph_problems(start, steps, [str(k) for k in raw_steps], problems)
    _correlation_problems(entry, goal, steps, problems)
    if problems or entry is None or re_entry is None or start is None or timezone is None:
        raise JourneyInvalid(source, problems)
    return Journey(
        name=name,
        entry=entry,
        start=start,
        steps=steps,
        description=description,
        re_entry=re_entry,
        goal=goal,
        holdout=float(holdout),
        message_class=message_class,
        default_timezone=timezone,
        campaign=campaign,
        version=version,
    )


def _check_class(value: Any, path: str, known: Collection[str] | None, problems: Problems) -> None:
    if not isinstance(value, str) or not CLASS_NAME.match(value):
        problems.append((path, f"expected a message class (promotional, transactional, ...); got {value!r}"))
    elif known is not None and value not in known:
        problems.append((path, f"unknown message class {value!r}; known: {', '.join(sorted(known))}"))


def _steps(raw: Any, problems: Problems, messages: Collection[str] | None) -> dict[str, Step]:
    if not isinstance(raw, Mapping) or not raw:
        problems.append(("steps", f"expected a mapping of step id -> step; got {raw!r}"))
        return {}
    out: dict[str, Step] = {}
    for step_id, spec in raw.items():
        path = f"steps.{step_id}"
        if not isinstance(step_id, str) or not STEP_ID.match(step_id):
            problems.append((path, f"expected a step id of 1-100 letters, digits or _; got {step_id!r}"))
            continue
        step = _step(step_id, spec, path, problems, messages)
        if step is not None:
            out[step_id] = step
    return out


def _correlation_problems(
    entry: Entry | None, goal: Goal | None, steps: Mapping[str, Step], problems: Problems
) -> None:
    if entry is None:
        return
    users: list[tuple[str, str]] = []
    if goal is not None and goal.correlate:
        users.append(("goal.correlate", goal.correlate))
    for step in steps.values():
        if isinstance(step.action, WaitForEvent) and step.action.correlate:
            users.append((f"steps.{step.id}.wait_for.correlate", step.action.correlate))
    for path, name in users:
        if entry.correlate is None:
            problems.append(
                (path, f"correlates on {name!r} but the entry has none; expected an event entry with correlate: {name}")
            )
        elif normalize_path(name) != normalize_path(entry.correlate):
            problems.append((path, f"expected the entry's correlate {entry.correlate!r}; got {name!r}"))


def parse_journey_text(
    text: str,
    source: str,
    *,
    fmt: str = "yaml",
    default_name: str | None = None,
    messages: Collection[str] | None = None,
    message_classes: Collection[str] | None = None,
) -> Journey:
    """A journey file's text (`fmt` yaml or toml) as a Journey; a syntax error is a JourneyInvalid too."""
    try:
        document = tomllib.loads(text) if fmt == "toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:  # the parser's message says where
        raise JourneyInvalid(source, [("", f"cannot parse the {fmt.upper()} text: {exc}")]) from None
    return parse_journey(
        document, source, default_name=default_name, messages=messages, message_classes=message_classes
    )


# --- the canonical form ----------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    return [_json_value(v) for v in value] if isinstance(value, tuple) else value


def _filters_dict(filters: Sequence[PropertyFilter]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for f in filters:
        value = True if f.op in ("exists", "missing") else _json_value(f.value)
        out.setdefault(f.name, {})[f.op] = value
    return out


def _condition_dict(condition: Condition) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if condition.traits:
        out["traits"] = _filters_dict(condition.traits)
    if condition.events:
        out["events"] = [_event_count_dict(e) for e in condition.events]
    if condition.trigger:
        out["trigger"] = _filters_dict(condition.trigger)
    if condition.in_segments:
        out["in_segment"] = list(condition.in_segments)
    if condition.not_in_segments:
        out["not_in_segment"] = list(condition.not_in_segments)
    return out


def _event_count_dict(rule: EventCount) -> dict[str, Any]:
    out: dict[str, Any] = {"event": rule.event}
    if rule.where:
        out["where"] = _filters_dict(rule.where)
    if rule.within is not None:
        out["within"] = rule.within
    if rule.none:
        out["none"] = True
    else:
        out["min_count"] = rule.min_count
    return out


def _entry_dict(entry: Entry) -> dict[str, Any]:
    if entry.kind == "event":
        out: dict[str, Any] = {"event": entry.event}
        if entry.where:
            out["where"] = _filters_dict(entry.where)
        if entry.correlate:
            out["correlate"] = entry.correlate
        return out
    if entry.kind in ("segment_entered", "segment_exited"):
        return {entry.kind: entry.segment}
    if entry.kind == "api":
        return {"api": True}
    return {"date": {"trait": entry.trait, "yearly": entry.yearly, "offset": entry.offset, "at": entry.at}}


def _correlation_dict(correlate: str | None, correlate_as: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if correlate:
        out["correlate"] = correlate
    if correlate_as:
        out["correlate_as"] = correlate_as
    return out


def _step_dict(step: Step) -> dict[str, Any]:
    a = step.action
    out: dict[str, Any]
    if isinstance(a, Wait):
        out = {"wait": a.seconds, "next": a.next}
    elif isinstance(a, WaitUntilWindow):
        out = {"wait_until": {"between": [a.start, a.end], "days": list(a.days)}, "next": a.next}
    elif isinstance(a, WaitForEvent):
        if a.segment is not None:
            wait: dict[str, Any] = {f"segment_{a.segment_change}": a.segment}
        else:
            wait = {"event": a.event}
            if a.where:
                wait["where"] = _filters_dict(a.where)
            wait |= _correlation_dict(a.correlate, a.correlate_as)
        wait["timeout"] = a.timeout
        out = {"wait_for": wait, "on_event": a.on_event, "on_timeout": a.on_timeout}
    elif isinstance(a, Branch):
        arms: list[dict[str, Any]] = [{"if": _condition_dict(arm.condition), "next": arm.next} for arm in a.arms]
        out = {"branch": [*arms, {"else": a.otherwise}]}
    elif isinstance(a, Split):
        out = {"split": {name: {"weight": weight, "next": target} for name, weight, target in a.arms}}
    elif isinstance(a, Send):
        send: dict[str, Any] = {"message": a.message, "channel": a.channel}
        if a.fallback:
            send["fallback"] = list(a.fallback)
        if a.message_class:
            send["class"] = a.message_class
        out = {"send": send, "next": a.next}
    elif isinstance(a, IssueCoupon):
        out = {"issue_coupon": {"pool": a.pool}, "next": a.next}
    elif isinstance(a, UpdateTrait):
        out = {"update_trait": {"trait": a.trait, "value": _json_value(a.value)}, "next": a.next}
    elif isinstance(a, CallWebhook):
        hook: dict[str, Any] = {"url": a.url}
        if a.secret_env:
            hook["secret_env"] = a.secret_env
        out = {"webhook": hook, "next": a.next}
    else:
        out = {"exit": a.reason}
    if step.on_error:
        out["on_error"] = step.on_error
    if step.label is not None:
        out["label"] = step.label
    return out


def journey_to_dict(journey: Journey) -> dict[str, Any]:
    """The journey as plain JSON-able values in the file format (durations in seconds, filters as
    `{name: {op: value}}`); `parse_journey` of it gives the same journey."""
    out: dict[str, Any] = {
        "name": journey.name,
        "description": journey.description,
        "campaign": journey.campaign or journey.name,
        "class": journey.message_class,
        "timezone": journey.default_timezone,
        "entry": _entry_dict(journey.entry),
        "re_entry": {"mode": journey.re_entry.mode},
        "holdout": journey.holdout,
    }
    if journey.re_entry.mode == "after":
        out["re_entry"]["cooldown"] = journey.re_entry.cooldown
    if journey.re_entry.max_entries is not None:
        out["re_entry"]["max_entries"] = journey.re_entry.max_entries
    if journey.goal is not None:
        goal: dict[str, Any] = {"event": journey.goal.event, "within": journey.goal.within}
        if journey.goal.where:
            goal["where"] = _filters_dict(journey.goal.where)
        out["goal"] = goal | _correlation_dict(journey.goal.correlate, journey.goal.correlate_as)
    out["start"] = journey.start
    out["steps"] = {step_id: _step_dict(step) for step_id, step in journey.steps.items()}
    if journey.version is not None:
        out["version"] = journey.version
    return out


def checksum(journey: Journey) -> str:
    """The sha256 (hex) of the journey's canonical form without its version: equal definitions, equal sums."""
    document = journey_to_dict(journey)
    document.pop("version", None)
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- publishing ------------------------------------------------------------------------------------------


def removed_steps(old: Journey, new: Journey) -> list[str]:
    """The steps of `old` that `new` no longer has, in `old`'s order."""
    return [s for s in old.steps if s not in new.steps]


@dataclass(frozen=True)
class StepMapping:
    """Where people waiting at a removed step go when a new version is published: old step -> new step.

    Nobody moves without one: `check` fails when people wait at a removed step that is not mapped."""

    moves: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Mapping[str, str] | Sequence[str] | None) -> StepMapping:
        """A mapping, or `old=new` texts (the CLI's `--map old=new`); InputError naming the bad item."""
        if raw is None:
            return cls({})
        if isinstance(raw, Mapping):
            items = list(raw.items())
        else:
            items = []
            for i, text in enumerate(raw):
                if not isinstance(text, str) or text.count("=") != 1:
                    raise InputError(f"expected OLD_STEP=NEW_STEP; got {text!r}", field="map", record=i + 1)
                old, new = (part.strip() for part in text.split("="))
                items.append((old, new))
        moves: dict[str, str] = {}
        for old, new in items:
            if not isinstance(old, str) or not isinstance(new, str) or not old or not new:
                raise InputError(f"expected step ids; got {old!r} -> {new!r}", field="map")
            if old in moves:
                raise InputError(f"step {old!r} is mapped twice ({moves[old]!r} and {new!r})", field="map")
            moves[old] = new
        return cls(moves)

    def check(self, old: Journey, new: Journey, waiting: Mapping[str, int] | None = None) -> StepMapping:
        """This mapping, checked for publishing `new` over `old`: every key a step `new` removes, every value a
        step of `new`, and every removed step where people wait (`waiting`: step -> count) mapped. Raises
        JourneyInvalid (source `<journey> publish`) with every problem."""
        problems: Problems = []
        removed = removed_steps(old, new)
        for source, target in self.moves.items():
            path = f"map.{source}"
            if source not in old.steps:
                problems.append((path, f"the old version has no step {source!r}; steps: {', '.join(old.steps)}"))
            elif source not in removed:
                problems.append((path, f"step {source!r} is kept in the new version; people there stay"))
            if target not in new.steps:
                problems.append((path, f"the new version has no step {target!r}; steps: {', '.join(new.steps)}"))
        for step_id in removed:
            count = (waiting or {}).get(step_id, 0)
            if count and step_id not in self.moves:
                problems.append(
                    (
                        f"map.{step_id}",
                        f"{count} run(s) wait at {step_id!r}, which the new version removes; "
                        f"map it to a step of the new version ({step_id}=STEP)",
                    )
                )
        if problems:
            raise JourneyInvalid(f"{new.name} publish", problems)
        return self


__all__ = [
    "CHANNELS",
    "DAYS",
    "STEP_KINDS",
    "JourneyInvalid",
    "StepMapping",
    "checksum",
    "journey_to_dict",
    "parse_duration",
    "parse_journey",
    "parse_journey_text",
    "removed_steps",
]
