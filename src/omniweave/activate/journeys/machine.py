"""The journey state machine: pure transitions of one run, no I/O.

`advance(journey, state, facts, now)` walks a run from its node through every instant step (branch,
split, exit, a held-out send) until it reaches a step that waits (a duration, a local time window,
an event) or has an effect (send, issue coupon, update trait, webhook). It returns an `Advance`: where
the run is now, its status and wake time, the wait to park, the effect to perform, and one `StepRow`
per step taken (the history `stats` and `explain` read). The service performs the effect and then
asks `after_effect` where the run goes (the step's `next`, or its `on_error` edge).

Stickiness without state: the holdout and split arms are drawn from a hash of (journey[, step],
person), so a replayed or restarted run lands on the same arm. The goal (`goal_met`) converts a
run when its event arrives within the window, carrying the trigger's correlation value when the
goal says so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from omniweave.activate.journeys import conditions
from omniweave.activate.journeys.model import (
    Branch,
    CallWebhook,
    Condition,
    Exit,
    Goal,
    IssueCoupon,
    Journey,
    PropertyFilter,
    Send,
    Split,
    UpdateTrait,
    Wait,
    WaitForEvent,
    WaitUntilWindow,
)
from omniweave.activate.policy import next_window_open

MAX_CHAIN = 1000  # instant steps one call may take: a loop of branches is a definition error, not a hang
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Status = Literal["active", "waiting", "done", "converted", "exited", "failed"]


# --- facts and results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EventFact:
    """One of the person's recent events: its name, when (epoch seconds), its properties."""

    event: str
    at: float
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunState:
    """A run as the store holds it: where it is and what it carries (`context`: the trigger's properties
    under `trigger`, the correlation value under `corr`, `held_out`, a waking event under `woken`)."""

    run_id: str
    person_id: str
    node: str
    entered_at: float
    context: Mapping[str, Any] = field(default_factory=dict)
    variant: str | None = None
    timed_out: bool = False  # claimed because a wait's `until` passed


@dataclass(frozen=True)
class Facts:
    """What the machine may look at: the person's traits, recent events (a callable: read only when a
    condition needs them), the segments they are in."""

    traits: Mapping[str, Any] = field(default_factory=dict)
    events: Callable[[], Sequence[EventFact]] | Sequence[EventFact] = ()
    segments: frozenset[str] = frozenset()

    def recent(self) -> Sequence[EventFact]:
        return self.events() if callable(self.events) else self.events


@dataclass(frozen=True)
class StepRow:
    """One step a run took: the node, its outcome (entered, waited, woken, timeout, branched, assigned,
    sent, skipped, rescheduled, coupon, trait, webhook, error, converted, exited, held_out) and why."""

    node: str
    outcome: str
    reason: str = ""


@dataclass(frozen=True)
class WaitSpec:
    """A wait to park: the event (or segment change) that wakes it, the correlation, the timeout."""

    event: str
    until: float
    corr_property: str | None = None
    corr_value: str | None = None


@dataclass(frozen=True)
class Effect:
    """Something the service must do at `node` (send, coupon, trait, webhook) before the run moves on."""

    node: str
    action: Send | IssueCoupon | UpdateTrait | CallWebhook


@dataclass(frozen=True)
class Advance:
    """Where a run stands after `advance`."""

    node: str
    status: Status
    wake_at: float | None
    context: Mapping[str, Any]
    variant: str | None
    steps: tuple[StepRow, ...]
    wait: WaitSpec | None = None
    effect: Effect | None = None
    end_reason: str | None = None


# --- hashing: sticky assignment -------------------------------------------------------------------


def unit_hash(*parts: str) -> float:
    """A number in [0, 1) from the parts: the same parts always give the same number."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def run_id(journey: str, person_id: str, entry_key: str) -> str:
    """The id of the run of `person_id` in `journey` for one entry key (a replayed trigger: the same id)."""
    return hashlib.sha256(f"{journey}|{person_id}|{entry_key}".encode()).hexdigest()[:32]


def in_holdout(journey: Journey, person_id: str) -> bool:
    """Whether the person is in the journey's holdout (sticky by journey and person)."""
    return journey.holdout > 0 and unit_hash("holdout", journey.name, person_id) < journey.holdout


def split_arm(journey: str, step: str, person_id: str, arms: Sequence[tuple[str, float, str]]) -> tuple[str, str]:
    """(arm name, next step) for the person at a split, by weight, sticky by (journey, step, person)."""
    total = sum(w for _, w, _ in arms)
    point = unit_hash("split", journey, step, person_id) * total
    for name, weight, target in arms:
        if point < weight:
            return name, target
        point -= weight
    return arms[-1][0], arms[-1][2]


# --- conditions -----------------------------------------------------------------------------------


def filter_holds(f: PropertyFilter, props: Mapping[str, Any]) -> bool:
    """`props[f.name] f.op f.value`, by the rules of `conditions.matches` (dotted paths, numbers as numbers)."""
    return conditions.matches((f,), props)


def filters_hold(filters: Sequence[PropertyFilter], props: Mapping[str, Any]) -> bool:
    return conditions.matches(filters, props)


def condition_holds(cond: Condition, facts: Facts, trigger: Mapping[str, Any], now: float) -> bool:
    """Whether every part of `cond` holds for the person now (`conditions.holds`; the events are read only
    when the condition has an event rule)."""
    events: Sequence[EventFact] = facts.recent() if cond.events else ()
    history = [(e.event, e.at, e.properties) for e in events]
    return conditions.holds(cond, facts.traits, history, trigger, facts.segments, now)


# --- time windows ---------------------------------------------------------------------------------


def zone(name: str | None, default: str = "UTC") -> ZoneInfo:
    """The IANA zone `name` (the journey's default, then UTC, when it is missing or unknown)."""
    for candidate in (name, default, "UTC"):
        if candidate:
            try:
                return ZoneInfo(str(candidate))
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def window_opens(now: float, tz: str, start: str, end: str, days: Sequence[str]) -> float:
    """When a `wait_until` window opens for a run: `activate.policy.next_window_open` (property-tested,
    DST-correct), with the zone falling back to UTC when unknown and the day names normalised."""
    wanted = tuple(dict.fromkeys(d.lower()[:3] for d in days if d.lower()[:3] in DAYS)) or DAYS
    return next_window_open(now, zone(tz).key, start, end, wanted)


# --- the walk -------------------------------------------------------------------------------------


def entry_context(journey: Journey, person_id: str, trigger: Mapping[str, Any] | None) -> dict[str, Any]:
    """The context a new run starts with: the trigger's properties, its correlation value, the holdout."""
    props = dict(trigger or {})
    ctx: dict[str, Any] = {"trigger": props, "held_out": in_holdout(journey, person_id)}
    if journey.entry.correlate:
        found = conditions.correlation_values(props, journey.entry.correlate)
        if found:
            ctx["corr"] = found[0]
    return ctx


def _corr_value(state: RunState, prop: str | None) -> str | None:
    """The trigger's correlation value at `prop` (a name or a dotted path, `conditions.correlation_values`):
    the first one it reaches, None when it reaches none."""
    if prop is None:
        return None
    trigger = state.context.get("trigger") or {}
    found = conditions.correlation_values(trigger, prop)
    return found[0] if found else None


def wait_matches(corr_property: str | None, corr_value: str | None, props: Mapping[str, Any]) -> bool:
    """Whether an event's properties carry a parked wait's correlation value: any value `corr_property` reaches
    (a name, or a dotted path into nested properties and through lists) equals it. A wait without a property
    matches every event; one whose trigger had no value matches none (only its timeout ends it)."""
    if not corr_property:
        return True
    return corr_value is not None and corr_value in conditions.correlation_values(props, corr_property)


def advance(journey: Journey, state: RunState, facts: Facts, now: float) -> Advance:
    """Walk the run from `state.node` until it waits, has an effect, or ends; see the module docstring."""
    ctx = dict(state.context)
    variant = state.variant
    node = state.node
    steps: list[StepRow] = []
    timed_out = state.timed_out
    trigger = ctx.get("trigger") or {}

    def done(status: Status, reason: str) -> Advance:
        return Advance(node, status, None, ctx, variant, tuple(steps), end_reason=reason)

    for _ in range(MAX_CHAIN):
        if node not in journey.steps:
            steps.append(StepRow(node, "error", f"step {node!r} is not in version {journey.version} of the journey"))
            return done("failed", f"unknown step {node!r}")
        step = journey.steps[node]
        a = step.action
        arrived = ctx.get("at_node") != node  # first time at this node (not a wake-up of its own wait)
        if isinstance(a, Exit):
            steps.append(StepRow(node, "exited", a.reason))
            return done("exited" if a.reason != "converted" else "converted", a.reason)
        if isinstance(a, Branch):
            target = a.otherwise
            why = "no arm held: else"
            for index, arm in enumerate(a.arms):
                if condition_holds(arm.condition, facts, trigger, now):
                    target, why = arm.next, f"arm {index + 1} held"
                    break
            steps.append(StepRow(node, "branched", f"{why} -> {target}"))
            node = target
            continue
        if isinstance(a, Split):
            arm_name, target = split_arm(journey.name, node, state.person_id, a.arms)
            variant = arm_name
            steps.append(StepRow(node, "assigned", f"arm {arm_name} -> {target}"))
            node = target
            continue
        if isinstance(a, Wait):
            if arrived:
                ctx["at_node"] = node
                ctx["until"] = now + a.seconds
                steps.append(StepRow(node, "waited", f"{a.seconds:g}s"))
            if now < float(ctx["until"]):
                return Advance(node, "active", float(ctx["until"]), ctx, variant, tuple(steps))
            ctx.pop("at_node", None)
            ctx.pop("until", None)
            node = a.next
            continue
        if isinstance(a, WaitUntilWindow):
            tz = str(facts.traits.get("timezone") or journey.default_timezone or "UTC")
            opens = window_opens(now, tz, a.start, a.end, a.days)
            if opens > now:
                if arrived:
                    ctx["at_node"] = node
                    steps.append(StepRow(node, "waited", f"until {a.start}-{a.end} {','.join(a.days)} in {tz}"))
                return Advance(node, "active", opens, ctx, variant, tuple(steps))
            ctx.pop("at_node", None)
            node = a.next
            continue
        if isinstance(a, WaitForEvent):
            woken = ctx.get("woken")
            if isinstance(woken, Mapping) and woken.get("node") == node:
                ctx.pop("woken", None)
                ctx.pop("at_node", None)
                steps.append(StepRow(node, "woken", f"{woken.get('event')} arrived -> {a.on_event}"))
                node = a.on_event
                continue
            if not arrived and timed_out:
                ctx.pop("at_node", None)
                timed_out = False
                steps.append(StepRow(node, "timeout", f"no {a.event or a.segment} in {a.timeout:g}s -> {a.on_timeout}"))
                node = a.on_timeout
                continue
            event = a.event or ("Segment Entered" if a.segment_change != "exited" else "Segment Exited")
            prop = (a.correlate_as or a.correlate) if a.correlate else None
            corr = _corr_value(state, a.correlate)
            if a.segment:
                prop, corr = "segment_id", a.segment
            until = now + a.timeout
            ctx["at_node"] = node
            steps.append(StepRow(node, "waited", f"for {event}" + (f" with {prop}={corr}" if prop else "")))
            return Advance(node, "waiting", until, ctx, variant, tuple(steps), wait=WaitSpec(event, until, prop, corr))
        # an effect
        if isinstance(a, Send) and ctx.get("held_out"):
            steps.append(StepRow(node, "held_out", f"in the holdout: {a.message} not sent"))
            node = a.next
            continue
        ctx.pop("at_node", None)
        return Advance(node, "active", now, ctx, variant, tuple(steps), effect=Effect(node, a))
    steps.append(StepRow(node, "error", f"more than {MAX_CHAIN} instant steps in a row: a loop"))
    return done("failed", "a loop of instant steps")


def after_effect(journey: Journey, node: str, ok: bool) -> str | None:
    """Where a run goes after the effect at `node`: its `next` when it worked, else its `on_error` edge
    (None: no edge, the run fails)."""
    step = journey.steps[node]
    if ok:
        return getattr(step.action, "next", None)
    return step.on_error


def woken_context(context: Mapping[str, Any], node: str, event: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    """The context of a run whose wait at `node` was met by `event`."""
    return {**context, "woken": {"node": node, "event": event, "properties": dict(properties)}}


def goal_met(
    journey: Journey, goal: Goal | None, state: RunState, event: str, props: Mapping[str, Any], at: float
) -> bool:
    """Whether `event` (with `props`, at `at`) meets the goal of the run."""
    if goal is None or event != goal.event or at > state.entered_at + goal.within or at < state.entered_at:
        return False
    if not filters_hold(goal.where, props):
        return False
    if goal.correlate:
        # a path through a list (`products.product_id`) holds when any element carries the value
        return wait_matches(goal.correlate_as or goal.correlate, _corr_value(state, goal.correlate), props)
    return True


def entry_matches(journey: Journey, event: str, props: Mapping[str, Any]) -> bool:
    """Whether an event starts a run of the journey (event entries and segment entries)."""
    e = journey.entry
    if e.kind == "event":
        return event == e.event and filters_hold(e.where, props)
    if e.kind == "segment_entered":
        return event == "Segment Entered" and props.get("segment_id") == e.segment
    if e.kind == "segment_exited":
        return event == "Segment Exited" and props.get("segment_id") == e.segment
    return False


def with_state(state: RunState, **changes: Any) -> RunState:
    return replace(state, **changes)


__all__ = [
    "Advance",
    "Effect",
    "EventFact",
    "Facts",
    "RunState",
    "StepRow",
    "WaitSpec",
    "advance",
    "after_effect",
    "condition_holds",
    "entry_context",
    "entry_matches",
    "filter_holds",
    "goal_met",
    "in_holdout",
    "next_window_open",
    "run_id",
    "split_arm",
    "unit_hash",
    "wait_matches",
    "window_opens",
    "woken_context",
]
