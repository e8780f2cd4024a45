"""What a journey is: the definition model the parser builds, the engine walks and the shells show.

Pure data, no I/O. A journey file (YAML or TOML, `activate/journeys/definition.py` parses and
validates it) becomes one `Journey`: an entry rule, re-entry rules, an optional goal and holdout,
and a graph of `Step`s keyed by id. Every step names where a run goes next; every step may name an
`on_error` step (default: the run ends as `failed` with the reason).

Durations are seconds (floats); local times are "HH:MM" strings interpreted in the person's IANA
time zone (the profile's `timezone`, else the journey's `default_timezone`, else UTC).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# --- conditions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PropertyFilter:
    """One test on an event property or a trait: `name op value` (`exists`/`missing` take no value)."""

    name: str
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists", "missing"]
    value: Any = None


@dataclass(frozen=True)
class EventCount:
    """The person did `event` (with `where`) at least `min_count` times in the last `within` seconds
    (None: ever) — or, with `min_count` 0 and `none` true, not at all."""

    event: str
    where: tuple[PropertyFilter, ...] = ()
    within: float | None = None
    min_count: int = 1
    none: bool = False


@dataclass(frozen=True)
class Condition:
    """All of `traits` (profile traits), `events` and `in_segments`/`not_in_segments` hold (an empty condition holds)."""

    traits: tuple[PropertyFilter, ...] = ()
    events: tuple[EventCount, ...] = ()
    trigger: tuple[PropertyFilter, ...] = ()  # tests on the properties of the event that started the run
    in_segments: tuple[str, ...] = ()
    not_in_segments: tuple[str, ...] = ()


# --- entry, re-entry, goal -----------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """How a person enters.

    kind:
      event           `event` arrives (its properties pass `where`); `correlate` names the trigger
                      property (e.g. `cart_id`) that later waits and the goal must match
      segment_entered / segment_exited   the `Segment Entered`/`Segment Exited` event of `segment`
      date            the date trait `trait` (e.g. `birthday`, month and day for a yearly one) plus
                      `offset` seconds, at local time `at`
      api             only through the API / a file of person ids (`journeys enter`)
    """

    kind: Literal["event", "segment_entered", "segment_exited", "date", "api"]
    event: str | None = None
    where: tuple[PropertyFilter, ...] = ()
    correlate: str | None = None
    segment: str | None = None
    trait: str | None = None
    offset: float = 0.0
    yearly: bool = False
    at: str = "09:00"


@dataclass(frozen=True)
class ReEntry:
    """`never`: one run per person ever; `always`: every trigger (distinct entry key) starts a run;
    `after`: again once `cooldown` seconds passed since the last entry. `max_entries` caps entries per person."""

    mode: Literal["never", "always", "after"] = "never"
    cooldown: float = 0.0
    max_entries: int | None = None


@dataclass(frozen=True)
class Goal:
    """The run converts (and ends) when `event` (with `where`, and the trigger's correlation value
    when `correlate`) arrives within `within` seconds of entry."""

    event: str
    within: float
    where: tuple[PropertyFilter, ...] = ()
    correlate: str | None = None
    correlate_as: str | None = None  # the goal event's property holding it (default: `correlate`)


# --- steps ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wait:
    """Wait `seconds`."""

    seconds: float
    next: str


@dataclass(frozen=True)
class WaitUntilWindow:
    """Wait until the person's local time is within [start, end) on one of `days` (mon..sun)."""

    start: str
    end: str
    days: tuple[str, ...]
    next: str


@dataclass(frozen=True)
class WaitForEvent:
    """Wait for `event` (with `where`; with `correlate`, the same value of that property as the
    trigger had) — or for the person to enter/exit `segment` — at most `timeout` seconds."""

    timeout: float
    on_event: str
    on_timeout: str
    event: str | None = None
    where: tuple[PropertyFilter, ...] = ()
    correlate: str | None = None
    correlate_as: str | None = None  # the awaited event's property holding that value (default: `correlate`),
    # e.g. `Order Completed`'s `checkout_id` for a `Product Added` trigger's `cart_id`
    segment: str | None = None
    segment_change: Literal["entered", "exited"] | None = None


@dataclass(frozen=True)
class BranchArm:
    condition: Condition
    next: str


@dataclass(frozen=True)
class Branch:
    """The first arm whose condition holds; else `otherwise`."""

    arms: tuple[BranchArm, ...]
    otherwise: str


@dataclass(frozen=True)
class Split:
    """Random split / A/B(-n): arm name -> (weight, next step). Assignment is sticky: a hash of
    (journey, step, person)."""

    arms: tuple[tuple[str, float, str], ...]


@dataclass(frozen=True)
class Send:
    """Send `message` on `channel` ("preferred": the person's preferred messaging channel), trying
    `fallback` channels in order when the person has no address, consent or reachability there."""

    message: str
    channel: str
    next: str
    fallback: tuple[str, ...] = ()
    message_class: str | None = None  # default: the message's own class


@dataclass(frozen=True)
class IssueCoupon:
    pool: str
    next: str


@dataclass(frozen=True)
class UpdateTrait:
    trait: str
    value: Any
    next: str


@dataclass(frozen=True)
class CallWebhook:
    """POST the run's facts to `url`, signed like the webhook channel (HMAC-SHA256 over timestamp + body)."""

    url: str
    next: str
    secret_env: str | None = None


@dataclass(frozen=True)
class Exit:
    reason: str = "exit"


Action = Wait | WaitUntilWindow | WaitForEvent | Branch | Split | Send | IssueCoupon | UpdateTrait | CallWebhook | Exit


@dataclass(frozen=True)
class Step:
    id: str
    action: Action
    on_error: str | None = None
    label: str | None = None

    @property
    def kind(self) -> str:
        return type(self.action).__name__

    def targets(self) -> tuple[str, ...]:
        """Every step id this step can lead to (for validation and drawing)."""
        a = self.action
        out: list[str] = []
        if isinstance(a, WaitForEvent):
            out += [a.on_event, a.on_timeout]
        elif isinstance(a, Branch):
            out += [arm.next for arm in a.arms] + [a.otherwise]
        elif isinstance(a, Split):
            out += [target for _, _, target in a.arms]
        elif not isinstance(a, Exit):
            out.append(a.next)
        if self.on_error:
            out.append(self.on_error)
        return tuple(out)


# --- the journey ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Journey:
    name: str
    entry: Entry
    start: str
    steps: Mapping[str, Step]
    description: str = ""
    re_entry: ReEntry = field(default_factory=ReEntry)
    goal: Goal | None = None
    holdout: float = 0.0  # share of entrants kept out of every send (sticky by person and journey)
    message_class: str = "promotional"
    default_timezone: str = "UTC"
    campaign: str | None = None
    version: int | None = None  # set when published

    def step(self, step_id: str) -> Step:
        return self.steps[step_id]


__all__ = [
    "Action",
    "Branch",
    "BranchArm",
    "CallWebhook",
    "Condition",
    "Entry",
    "EventCount",
    "Exit",
    "Goal",
    "IssueCoupon",
    "Journey",
    "PropertyFilter",
    "ReEntry",
    "Send",
    "Split",
    "Step",
    "UpdateTrait",
    "Wait",
    "WaitForEvent",
    "WaitUntilWindow",
]
