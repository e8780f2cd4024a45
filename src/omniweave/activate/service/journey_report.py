"""What a journey looks like from the outside, besides `journey_stats`: its definition as it runs, a person to
preview its messages for, and what became of the messages sent (deliveries, opens, clicks, bounces,
unsubscribes) over time.

- `journey_definition(runtime, name)`: the newest published version (what the engine runs), else the journey's
  file; InputError naming `journey` when there is neither.
- `preview_person(runtime, journey)`: the person of the journey's earliest run, else the first profile with an
  e-mail address (person ids in order), else None: the sample `messages preview` renders for.
- `message_activity(runtime, period)`: per period, channel and journey, the feedback events the channels report
  about messages (channels/feedback.py, and the providers' exports the importers load), counted by what they say:
  `delivered`, `opened`, `clicked`, `bounced`, `unsubscribed` (`MEASURE_EVENTS` lists the event names of each).
  An event is about a journey's send when its properties name the journey (`journey`), or carry one of its send
  keys (`send_key` `j:<journey>:<node>:<run>`, activate/service/journeys.py); other events (a campaign's) have
  no journey. `totals(journey=…, channel=…)` adds up the rows of one journey or channel per period.

The dashboard's Journeys page shows them (shells/web/pages/journeys.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import ibis
import sqlalchemy as sa

from omniweave.activate.journeys.model import Journey
from omniweave.activate.service.journey_stats import find_journey, journey_files
from omniweave.activate.service.journeys import load_journey
from omniweave.channels.feedback import LABELS
from omniweave.errors import InputError
from omniweave.events import spec
from omniweave.runtime import Runtime
from omniweave.storage.engine import to_arrow
from omniweave.storage.ops import journeys as Q
from omniweave.storage.ops.tables.journeys import journey_runs

PERIODS = ("day", "week", "month")
MEASURES = ("delivered", "opened", "clicked", "bounced", "unsubscribed")


def _labelled(*whats: str) -> set[str]:
    return {f"{label} {what}" for label in LABELS.values() for what in whats}


MEASURE_EVENTS: Mapping[str, frozenset[str]] = {
    "delivered": frozenset(
        {spec.EMAIL_DELIVERED, spec.MESSAGE_DELIVERED, spec.PUSH_NOTIFICATION_RECEIVED} | _labelled("Delivered")
    ),
    "opened": frozenset({spec.EMAIL_OPENED, spec.MESSAGE_OPENED} | _labelled("Opened", "Read")),
    "clicked": frozenset(
        {spec.EMAIL_LINK_CLICKED, spec.MESSAGE_LINK_CLICKED, spec.PUSH_NOTIFICATION_TAPPED, "Link Clicked"}
        | _labelled("Link Clicked")
    ),
    "bounced": frozenset({spec.EMAIL_BOUNCED} | _labelled("Bounced", "Undelivered")),
    "unsubscribed": frozenset({spec.UNSUBSCRIBED}),
}
"""The feedback event names counted under each measure: the e-mail spec's, the messaging ones (`Message Delivered`,
`Push Notification Received` …) and the channels' own (`SMS Delivered`, `WhatsApp Read`, `SMS Undelivered` …)."""
_MEASURE_OF = {name: measure for measure, names in MEASURE_EVENTS.items() for name in names}


def measure_of(event: str | None) -> str | None:
    """The measure a feedback event counts under (None: not a message's feedback)."""
    return _MEASURE_OF.get(event or "")


# --- the definition and a sample person ---------------------------------------------------------------


@dataclass(frozen=True)
class JourneyDefinition:
    journey: Journey
    published_version: int | None  # None: not published, read from its file


def journey_definition(runtime: Runtime, name: str) -> JourneyDefinition:
    """The newest published version of journey `name`, else its file (see the module docstring)."""
    with runtime.store.engine.connect() as conn:
        published = Q.latest_versions(conn).get(name)
    if published is not None:
        version, raw = published
        return JourneyDefinition(load_journey(raw, version), version)
    if name not in journey_files(runtime.settings):
        raise InputError(f"no journey {name!r}: neither published nor a journey file", field="journey")
    return JourneyDefinition(find_journey(runtime.settings, name), None)


def preview_person(runtime: Runtime, journey: str) -> str | None:
    """A person to preview `journey`'s messages for (see the module docstring)."""
    with runtime.store.engine.connect() as conn:
        first = conn.execute(
            sa.select(journey_runs.c.person_id)
            .where(journey_runs.c.journey == journey)
            .order_by(journey_runs.c.entered_at, journey_runs.c.id)
            .limit(1)
        ).scalar()
    if first is not None:
        return str(first)
    if not runtime.log.has_data("profiles"):
        return None
    profiles = runtime.warehouse().table("profiles")
    if "emails" not in profiles.columns:
        return None
    chosen = profiles.filter(profiles.emails.length() > 0).select("person_id").order_by("person_id").limit(1)
    found = to_arrow(chosen).column("person_id").to_pylist()
    return str(found[0]) if found else None


# --- the messages' feedback over time -----------------------------------------------------------------


def period_start(day: date, period: str) -> date:
    """The first day of the period (ISO week from Monday) that holds `day`."""
    if period == "month":
        return day.replace(day=1)
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day


@dataclass(frozen=True)
class ActivityRow:
    period: date
    channel: str
    journey: str | None  # the journey whose send the events are about (None: a campaign's, or not known)
    counts: Mapping[str, int]  # measure -> events

    def to_dict(self) -> dict[str, Any]:
        return {
            "period": self.period.isoformat(),
            "channel": self.channel,
            "journey": self.journey,
            **{m: self.counts[m] for m in MEASURES},
        }


@dataclass(frozen=True)
class MessageActivity:
    """Feedback events per period, channel and journey (rows sorted by period, channel, journey)."""

    period: str
    rows: tuple[ActivityRow, ...]

    def channels(self) -> list[str]:
        return sorted({r.channel for r in self.rows})

    def journeys(self) -> list[str]:
        return sorted({r.journey for r in self.rows if r.journey is not None})

    def totals(self, *, journey: str | None = None, channel: str | None = None) -> list[tuple[date, dict[str, int]]]:
        """Per period, the rows of `journey` and `channel` (each: every one when None) added up."""
        out: dict[date, dict[str, int]] = {}
        for r in self.rows:
            if (journey is not None and r.journey != journey) or (channel is not None and r.channel != channel):
                continue
            cell = out.setdefault(r.period, dict.fromkeys(MEASURES, 0))
            for m in MEASURES:
                cell[m] += r.counts[m]
        return sorted(out.items())

    def to_dict(self) -> dict[str, Any]:
        return {"period": self.period, "rows": [r.to_dict() for r in self.rows]}


def message_activity(runtime: Runtime, period: str = "day") -> MessageActivity:
    """Deliveries, opens, clicks, bounces and unsubscribes per period, channel and journey (see the module
    docstring): one pass over the feedback events, filtered by journey or channel afterwards (`totals`)."""
    if period not in PERIODS:
        raise InputError(f"period must be one of {', '.join(PERIODS)}, got {period!r}", field="period")
    if not runtime.log.has_data("events"):
        return MessageActivity(period, ())
    ev = runtime.warehouse().table("events")
    ev = ev.filter(ev.event.isin(sorted(_MEASURE_OF)) & ev.channel.notnull())
    ev = runtime.engine.dialect.with_json_fields(ev, "properties", {"_journey": "journey", "_send_key": "send_key"})
    from_key = ev._send_key.re_extract(r"^j:([^:]+):", 1)
    journey = ibis.coalesce(ev._journey.nullif(""), from_key.nullif(""))
    counted = ev.group_by([ev.timestamp.date().name("day"), ev.channel, journey.name("journey"), ev.event]).aggregate(
        n=ev.count()
    )
    cells: dict[tuple[date, str, str], dict[str, int]] = {}
    for row in to_arrow(counted).to_pylist():
        key = (period_start(row["day"], period), str(row["channel"]), row["journey"] or "")
        cell = cells.setdefault(key, dict.fromkeys(MEASURES, 0))
        cell[_MEASURE_OF[row["event"]]] += int(row["n"])
    rows = tuple(ActivityRow(p, c, j or None, counts) for (p, c, j), counts in sorted(cells.items()))
    return MessageActivity(period, rows)
