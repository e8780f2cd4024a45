"""The policy engine's rules: may this message go to this person now, later, or never — and why.

`decide(intent, facts, rules, now)` is pure: the service (`activate/service/policy.py`) gathers the
`Facts` under a lock on the person and records the `Verdict`. The rules, in the order they are asked
(the first that says no gives the reason):

1. consent per channel and purpose (`consent_problem`): a promotional message (any class but
   `transactional`) needs a stated yes on the channel and no stated no to marketing; a transactional
   one only no stated no on the channel;
2. suppression (bounce, complaint, unsubscribe, STOP, deletion) of the address on the channel;
3. the WhatsApp 24-hour rule: a free-form message only within 24 h of the person's last inbound
   message (templates always);
4. time to live: a send due at `intended_at` is dropped as expired once `intended_at + ttl` has passed
   (no 08:00 promotion at 15:00 after an outage);
5. quiet hours in the person's IANA zone (DST-correct): reschedule to the first allowed local instant,
   drop, or ignore, per message class;
6. frequency caps, global (`all`) and per channel, over rolling windows `(now - window, now]`: reschedule
   to when the windows free a slot, drop, or ignore, per message class.

A reschedule for a frequency cap whose time would pass the TTL is a drop ("expired before …"): a
message never goes out later than its TTL allows because of an outage or a cap. Quiet hours are a
deliberate deferral, not a delay: a send rescheduled to the end of the quiet hours is due then, and
its TTL counts from that moment (the caller asks again with `intended_at` = the verdict's `retry_at`),
so an evening promotion goes out at 08:00 instead of being dropped. `next_window_open` is the time-window arithmetic, shared with the journeys'
`wait_until`.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from omniweave.errors import InputError
from omniweave.settings import ClassPolicy, FrequencyCap, PolicySettings

CONSENT_COLUMNS = {
    "email": "consent_email",
    "sms": "consent_sms",
    "whatsapp": "consent_whatsapp",
    "push": "consent_push",
    "print": "consent_direct_mail",
}
"""The profile column that holds a person's consent to each channel (profiles/service/build.py)."""
PURPOSE_COLUMN = "consent_purpose_marketing"
WHATSAPP_WINDOW_SECONDS = 24 * 3600.0
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class SendIntent:
    """One message about to go to one person: on which channel, of which class, under which ledger key."""

    person_id: str
    channel: str
    message_class: str
    key: str
    journey: str | None = None
    intended_at: float | None = None  # when the send first became due (TTL counts from here)
    free_form: bool = False  # WhatsApp: a free-form (non-template) message


@dataclass(frozen=True)
class Facts:
    """What the rules need to know about the person, gathered under the person's lock."""

    consent: Mapping[str, bool | None]  # the profile's consent columns as they are
    suppressed: str | None  # the suppression reason for this address, or None
    timezone: str | None  # the person's IANA zone (profile `timezone`)
    recent: Sequence[tuple[float, str]]  # (created_at, channel) of the person's ledger rows in the longest cap window
    whatsapp_last_inbound: float | None = None


@dataclass(frozen=True)
class Verdict:
    """send now; reschedule at `retry_at` and ask again; or drop — with the reason in words."""

    outcome: Literal["send", "reschedule", "drop"]
    reason: str
    retry_at: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {"outcome": self.outcome, "reason": self.reason, "retry_at": self.retry_at}


# --- consent --------------------------------------------------------------------------------------


def consent_problem(channel: str, message_class: str, consent: Mapping[str, object]) -> str | None:
    """Why the person may not get a message of `message_class` on `channel` (None: they may).

    Every class but `transactional` needs a stated yes on the channel (`consent_<channel>` true) and no
    stated no to marketing (`consent_purpose_marketing`); a transactional one only no stated no on the
    channel. A channel without a consent column (webhook) asks only the purpose."""
    column = CONSENT_COLUMNS.get(channel)
    value = consent.get(column) if column else None
    if message_class != "transactional":
        if column is not None and value is not True:
            said = "never stated" if value is None else "opted out"
            return f"no {channel} consent ({column} is {'NULL' if value is None else str(value).lower()}: {said})"
        if consent.get(PURPOSE_COLUMN) is False:
            return f"no marketing consent ({PURPOSE_COLUMN} is false)"
    elif value is False:
        return f"opted out of {channel} ({column} is false)"
    return None


# --- local time windows ---------------------------------------------------------------------------


@lru_cache(maxsize=256)
def zone_of(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone `name`; InputError naming it when it is unknown."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InputError(
            f"unknown time zone {name!r}; expected an IANA name such as 'Europe/Berlin'", field="timezone"
        ) from None


def clock_time(text: str, field: str = "time") -> dt.time:
    """`HH:MM` as a time of day; InputError when it is not one."""
    try:
        hours, minutes = text.split(":")
        return dt.time(int(hours), int(minutes))
    except (ValueError, AttributeError):
        raise InputError(f"{field} must be a local time HH:MM (00:00-23:59), got {text!r}", field=field) from None


def _in_window(at: float, zone: dt.tzinfo, start: dt.time, end: dt.time, days: frozenset[int]) -> bool:
    """Whether the local time at UTC instant `at` lies in [start, end) on one of `days` (weekday numbers).

    A window that ends before it starts runs past midnight and belongs to the day it starts on;
    start == end is the whole day."""
    local = dt.datetime.fromtimestamp(at, zone)
    now = local.time().replace(tzinfo=None)
    weekday = local.weekday()
    if start == end:
        return weekday in days
    if start < end:
        return weekday in days and start <= now < end
    return (now >= start and weekday in days) or (now < end and (weekday - 1) % 7 in days)


def _offset(at: int, zone: dt.tzinfo) -> dt.timedelta | None:
    return dt.datetime.fromtimestamp(at, zone).utcoffset()


@lru_cache(maxsize=8192)
def _day_transitions(zone: dt.tzinfo, day: int, step: int = 3 * 3600) -> tuple[int, ...]:
    """The first second of every change of UTC offset within UTC day number `day` (DST starts and ends)."""
    found = []
    t, hi = day * 86400, (day + 1) * 86400
    while t < hi:
        nxt = t + step
        if _offset(t, zone) != _offset(nxt, zone):
            a, b = t, nxt  # offset(a) != offset(b): bisect to the first second with the new offset
            while b - a > 1:
                mid = (a + b) // 2
                if _offset(mid, zone) == _offset(a, zone):
                    a = mid
                else:
                    b = mid
            if b < hi:
                found.append(b)
        t = nxt
    return tuple(found)


@lru_cache(maxsize=8192)
def _instants(day: dt.date, at: dt.time, zone: dt.tzinfo) -> tuple[float, ...]:
    """The UTC instants at which the local clock reads `day` `at`: none in a DST gap, two in a fold."""
    out = []
    naive = dt.datetime.combine(day, at)
    for fold in (0, 1):
        instant = naive.replace(tzinfo=zone, fold=fold).timestamp()
        if dt.datetime.fromtimestamp(instant, zone).replace(tzinfo=None) == naive:
            out.append(instant)
    return tuple(sorted(set(out)))


def next_window_open(now: float, tz: str, start: str, end: str, days: Sequence[str] = DAYS) -> float:
    """The first instant >= `now` at which the local time in `tz` is in [`start`, `end`) on one of `days`.

    DST-correct: the window can only open at `now`, at an instant whose local clock reads `start`
    (both instants of a repeated hour; none in a skipped one) or at a change of offset (the clock jumps
    into the window, e.g. over a skipped `start`), so those candidates are tried in time order, one UTC
    day at a time. A window that ends before it starts runs past midnight; `start == end` is the whole
    day."""
    zone = zone_of(tz)
    opens, closes = clock_time(start, "start"), clock_time(end, "end")
    wanted = set()
    for name in days:
        if name not in DAYS:
            raise InputError(f"days: expected names among {', '.join(DAYS)}, got {name!r}", field="days")
        wanted.add(DAYS.index(name))
    if not wanted:
        raise InputError("days: at least one day is needed", field="days")
    chosen = frozenset(wanted)
    if _in_window(now, zone, opens, closes, chosen):
        return now
    first_moment = dt.time(0) if opens == closes else opens  # a whole-day window opens at midnight
    first_day = int(now // 86400)
    for day in range(first_day, first_day + 9):
        lo, hi = max(now, day * 86400.0), (day + 1) * 86400.0
        candidates = [float(t) for t in _day_transitions(zone, day) if lo <= t < hi]
        local = dt.datetime.fromtimestamp(lo, zone).date()
        for offset in (-1, 0, 1):
            candidates += [t for t in _instants(local + dt.timedelta(days=offset), first_moment, zone) if lo <= t < hi]
        for t in sorted(candidates):
            if _in_window(t, zone, opens, closes, chosen):
                return t
    raise InputError(f"the window {start}-{end} on {', '.join(days)} never opens in {tz}", field="days")


# --- the decision ---------------------------------------------------------------------------------


def _when(at: float, zone: dt.tzinfo) -> str:
    return dt.datetime.fromtimestamp(at, zone).strftime("%Y-%m-%d %H:%M %Z")


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def cap_free_at(cap: FrequencyCap, channel: str, recent: Sequence[tuple[float, str]], now: float) -> float | None:
    """When `cap` lets one more message on `channel` through (None: it applies not or has room now).

    Rows count while `created_at > now - window`; the slot frees when enough of them have aged out."""
    if cap.channel not in ("all", channel):
        return None
    inside = sorted(t for t, c in recent if t > now - cap.window and cap.channel in ("all", c))
    if len(inside) < cap.count:
        return None
    if cap.count == 0:
        return float("inf")
    return inside[len(inside) - cap.count] + cap.window


def decide(intent: SendIntent, facts: Facts, rules: PolicySettings, now: float) -> Verdict:
    """send, reschedule or drop `intent` at `now`, with the reason (see the module docstring for the order)."""
    problem = consent_problem(intent.channel, intent.message_class, facts.consent)
    if problem:
        return Verdict("drop", problem)
    if facts.suppressed is not None:
        return Verdict("drop", f"suppressed ({facts.suppressed})")
    if intent.channel == "whatsapp" and intent.free_form:
        last = facts.whatsapp_last_inbound
        if last is None or now - last > WHATSAPP_WINDOW_SECONDS:
            since = "never wrote to us" if last is None else f"last wrote {_duration(round(now - last))} ago"
            return Verdict("drop", f"whatsapp free-form message outside the 24-hour window (the person {since})")
    rule = rules.rule(intent.message_class)
    deadline = _deadline(intent, rule, now)
    if deadline is not None and now > deadline:
        return Verdict(
            "drop", f"expired: due {_duration(round(now - (intent.intended_at or now)))} ago, ttl {_duration(rule.ttl)}"
        )
    zone_name = facts.timezone if facts.timezone and _known(facts.timezone) else rules.timezone
    zone = zone_of(zone_name)
    retry = now
    reasons = []
    capped = [
        (cap, free)
        for cap in rules.caps
        if (free := cap_free_at(cap, intent.channel, facts.recent, now)) is not None and rule.capped != "ignore"
    ]
    if capped:
        cap, free = max(capped, key=lambda pair: pair[1])
        what = "all channels" if cap.channel == "all" else cap.channel
        said = f"frequency cap: {cap.count} per {_duration(cap.window)} on {what}"
        if rule.capped == "drop" or free == float("inf"):
            return Verdict("drop", said)
        retry = free
        reasons.append(said)
        if deadline is not None and retry > deadline:
            reason = f"{said}: next allowed {_when(retry, zone)}"
            return Verdict("drop", f"expired before it could go: {reason}, after its ttl {_duration(rule.ttl)}")
    if rules.quiet_hours and rule.quiet_hours != "ignore":
        quiet_start, quiet_end = rules.quiet_hours
        allowed = next_window_open(retry, zone_name, quiet_end, quiet_start)
        if allowed > retry:
            said = f"quiet hours {quiet_start}-{quiet_end} in {zone_name}"
            if rule.quiet_hours == "drop":
                return Verdict("drop", "; then ".join([*reasons, said]))
            retry = allowed
            reasons.append(said)
    if retry > now:
        reason = "; then ".join(reasons) + f": next allowed {_when(retry, zone)}"
        return Verdict("reschedule", reason, retry)
    return Verdict("send", "allowed")


def _deadline(intent: SendIntent, rule: ClassPolicy, now: float) -> float | None:
    """The last instant the send may go: TTL seconds after it was due (now when not said), None without TTL."""
    if rule.ttl <= 0:
        return None
    return (intent.intended_at if intent.intended_at is not None else now) + rule.ttl


def _known(zone: str) -> bool:
    try:
        zone_of(zone)
    except InputError:
        return False
    return True


__all__ = [
    "CONSENT_COLUMNS",
    "DAYS",
    "Facts",
    "SendIntent",
    "Verdict",
    "cap_free_at",
    "consent_problem",
    "decide",
    "next_window_open",
]
