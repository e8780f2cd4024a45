"""What the Journeys page reads besides `journey_stats`: the definition as it runs, a sample person, and the
messages' feedback over time, counted against an independent tally of the same events."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from omniweave.activate.journeys.definition import parse_journey
from omniweave.activate.service.journey_report import (
    MEASURE_EVENTS,
    journey_definition,
    measure_of,
    message_activity,
    period_start,
    preview_person,
)
from omniweave.activate.service.journeys import JourneyEngine, publish
from omniweave.channels.feedback import event_for
from omniweave.errors import InputError
from omniweave.runtime import Runtime
from omniweave.storage.eventlog import events_to_table

from .conftest import NOON, Clock

START = datetime(2026, 3, 30, 8, 0, tzinfo=UTC)  # a Monday: weeks start on it, months are cut on the 1st

# what each measure counts, spelled as the senders spell it; `None` journey: a campaign's message
FEEDBACK = [
    ("Email Delivered", "email", "delivered"),
    ("Email Opened", "email", "opened"),
    ("Email Link Clicked", "email", "clicked"),
    ("Email Bounced", "email", "bounced"),
    ("Unsubscribed", "email", "unsubscribed"),
    ("SMS Delivered", "sms", "delivered"),
    ("SMS Undelivered", "sms", "bounced"),
    ("Message Delivered", "whatsapp", "delivered"),
    ("WhatsApp Read", "whatsapp", "opened"),
    ("Link Clicked", "sms", "clicked"),
    ("Push Notification Received", "push", "delivered"),
    ("Push Notification Tapped", "push", "clicked"),
]
NOT_FEEDBACK = [("Order Completed", "web"), ("Ad Clicked", "social"), ("Email Sent", "email"), ("Page Viewed", "web")]


def _events(seed: int) -> tuple[list[dict[str, Any]], list[tuple[datetime, str, str | None, str]]]:
    """Random feedback events of two journeys (named in the properties, or by their send keys) and of campaigns,
    with other events mixed in; and the truth (moment, channel, journey, measure) of those that count."""
    rng = random.Random(seed)
    events, truth = [], []
    for n in range(400):
        at = START + timedelta(hours=rng.randrange(24 * 50))
        if rng.random() < 0.15:
            name, channel = rng.choice(NOT_FEEDBACK)
            events.append(
                {
                    "type": "track",
                    "event": name,
                    "messageId": f"x{n}",
                    "userId": "u1",
                    "timestamp": at.isoformat(),
                    "properties": {"channel": channel, "journey": "winback"},
                }
            )
            continue
        name, channel, measure = rng.choice(FEEDBACK)
        journey = rng.choice(["winback", "cart_abandonment", None])
        how = rng.choice(["key", "property"])
        props: dict[str, Any] = {"campaign": "newsletter"}
        key = f"j:{journey}:step:r{n}" if journey and how == "key" else f"msg:newsletter:seg:P{n}:{channel}"
        if journey and how == "property":
            props["journey"] = journey
        event = event_for(
            name, channel=channel, address=f"p{n}@example.com", at=at.timestamp(), send_key=key, properties=props
        )
        event["messageId"] = f"f{n}"
        events.append(event)
        truth.append((at, channel, journey, measure))
    return events, truth


def test_feedback_over_time_is_counted_per_journey_and_channel(runtime: Runtime) -> None:
    events, truth = _events(seed=5)
    runtime.log.append("events", events_to_table(events, source="omniweave-channels"), batch_name="feedback")
    for period in ("day", "week", "month"):
        activity = message_activity(runtime, period)
        assert activity.journeys() == ["cart_abandonment", "winback"]
        assert activity.channels() == ["email", "push", "sms", "whatsapp"]
        for journey in (None, "winback", "cart_abandonment"):
            for channel in (None, "sms", "email"):
                tally: Counter[tuple[Any, str]] = Counter()
                for at, ch, j, measure in truth:
                    if (journey is None or j == journey) and (channel is None or ch == channel):
                        tally[(period_start(at.date(), period), measure)] += 1
                got = activity.totals(journey=journey, channel=channel)
                assert {(p, m): n for p, counts in got for m, n in counts.items() if n} == dict(tally), (
                    period,
                    journey,
                    channel,
                )
    with pytest.raises(InputError) as raised:
        message_activity(runtime, "hour")
    assert raised.value.field == "period"


def test_every_feedback_name_counts_under_one_measure() -> None:
    names = [n for names in MEASURE_EVENTS.values() for n in names]
    assert len(names) == len(set(names))
    assert measure_of("SMS Delivered") == "delivered" and measure_of("WhatsApp Read") == "opened"
    assert measure_of("Ad Clicked") is None and measure_of("Email Sent") is None and measure_of(None) is None


def test_the_definition_is_the_published_one_else_the_file(world: Runtime) -> None:
    shown = journey_definition(world, "cart_abandonment")
    assert shown.published_version is None and shown.journey.start == "wait_hour"  # the built-in file
    draft = parse_journey(
        {
            "name": "cart_abandonment",
            "entry": {"api": True},
            "start": "email",
            "steps": {
                "email": {"send": {"message": "cart_reminder", "channel": "email"}, "next": "done"},
                "done": {"exit": "done"},
            },
        },
        "cart_abandonment",
    )
    publish(world, draft)
    shown = journey_definition(world, "cart_abandonment")
    assert shown.published_version == 1 and shown.journey.start == "email"
    with pytest.raises(InputError) as raised:
        journey_definition(world, "nope")
    assert raised.value.field == "journey"


def test_the_sample_person_is_the_first_runs_else_a_profile_with_an_email(world: Runtime) -> None:
    assert preview_person(world, "store_event_invitation") == "P1"  # no run yet: the first profile with an e-mail
    journey = parse_journey(
        {
            "name": "invite",
            "entry": {"api": True},
            "start": "wait",
            "steps": {"wait": {"wait": "1d", "next": "done"}, "done": {"exit": "done"}},
        },
        "invite",
    )
    publish(world, journey)
    engine = JourneyEngine(world, fake=True, clock=Clock(NOON.timestamp()))
    assert engine.enter_many("invite", ["P3"], "first") == 1
    engine.clock = Clock(NOON.timestamp() + 60)
    assert engine.enter_many("invite", ["P2"], "second") == 1
    assert preview_person(world, "invite") == "P3"
