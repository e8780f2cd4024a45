"""Profile insights by response: synthetic people with known preferences (preferred messaging channel,
own hour of activity, most responsive promotion) are recovered by a real profile build on DuckDB; people
with too little history are `unknown`, never guessed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from omniweave.events import spec
from omniweave.profiles.insights import MESSAGING_CHANNELS, UNKNOWN
from omniweave.profiles.service.build import build_profiles, write_identities
from omniweave.runtime import Runtime
from omniweave.storage.eventlog import events_to_table
from tests.segment_events import segment_event

NOW = datetime(2026, 6, 30, tzinfo=UTC)
START = datetime(2026, 4, 1, tzinfo=UTC)
# responses per message received: (not preferred, preferred); channels differ in their base rates
RATES = {"email": (0.2, 0.5), "sms": (0.08, 0.3), "whatsapp": (0.3, 0.8), "push": (0.08, 0.3)}
SENT = {
    "email": spec.EMAIL_SENT,
    "sms": spec.MESSAGE_SENT,
    "whatsapp": spec.MESSAGE_SENT,
    "push": spec.PUSH_NOTIFICATION_RECEIVED,
}
ANSWER = {
    "email": spec.EMAIL_OPENED,
    "sms": spec.MESSAGE_LINK_CLICKED,
    "whatsapp": spec.MESSAGE_OPENED,
    "push": spec.PUSH_NOTIFICATION_TAPPED,
}
PROMOTIONS = ("coupon", "discount", "free_shipping", "event")


class World:
    """Events and identities of synthetic people; each person `P<i>` is the anonymous id `a<i>`."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.people: list[str] = []

    def person(self) -> str:
        pid = f"P{len(self.people):03d}"
        self.people.append(pid)
        return pid

    def add(self, pid: str, at: datetime, **fields: Any) -> None:
        iso = at.isoformat().replace("+00:00", "Z")
        self.events.append(segment_event(len(self.events), iso, received_at=NOW, anon="a" + pid[1:], **fields))

    def load(self, runtime: Runtime) -> None:
        runtime.log.append("events", events_to_table(self.events, "test"), "world")
        write_identities(runtime, [("anonymous_id", "a" + p[1:], p) for p in self.people])


def _message(world: World, pid: str, channel: str, day: int, answered: bool, **props: Any) -> None:
    sent = START + timedelta(days=day, hours=10)  # the sender's hour, the same for everyone
    world.add(pid, sent, event=SENT[channel], channel=channel, **props)
    if answered:
        world.add(pid, sent + timedelta(minutes=20), event=ANSWER[channel], channel=channel, **props)


def _profiles(runtime: Runtime, world: World) -> dict[str, dict[str, Any]]:
    world.load(runtime)
    build_profiles(runtime, now=NOW)
    rows = runtime.warehouse().sql("select * from profiles").to_pylist()
    return {row["person_id"]: row for row in rows}


def test_preferred_messaging_channel_is_recovered_by_response_not_volume(runtime: Runtime) -> None:
    rng = np.random.default_rng(3)
    world, truth = World(), {}
    for i in range(48):
        pid, preferred = world.person(), MESSAGING_CHANNELS[i % 4]
        truth[pid] = preferred
        for channel in MESSAGING_CHANNELS:
            rate = RATES[channel][channel == preferred]
            # e-mail is the volume channel: three times the messages of the others
            for day in range(36 if channel == "email" else 12):
                _message(world, pid, channel, day, bool(rng.random() < rate))
    # 40 e-mails answered at e-mail's usual rate, 8 WhatsApp messages answered far above WhatsApp's
    volume = world.person()
    for day in range(40):
        _message(world, volume, "email", day, day % 5 == 0)
    for day in range(8):
        _message(world, volume, "whatsapp", day, day != 3)
    # three messages are too few to say anything
    thin = world.person()
    for day, channel in enumerate(("email", "sms", "push")):
        _message(world, thin, channel, day, True)
    silent = world.person()
    world.add(silent, START, type="page", context={})

    profiles = _profiles(runtime, world)
    hits = sum(profiles[pid]["preferred_messaging_channel"] == preferred for pid, preferred in truth.items())
    assert hits / len(truth) >= 0.8, hits
    # recovered for every channel, not only for the common one
    for channel in MESSAGING_CHANNELS:
        mine = [pid for pid, preferred in truth.items() if preferred == channel]
        assert sum(profiles[pid]["preferred_messaging_channel"] == channel for pid in mine) >= len(mine) // 2
    assert profiles[volume]["preferred_messaging_channel"] == "whatsapp"
    assert profiles[volume]["preferred_channel"] == "email"  # the engagement-volume insight, unchanged
    cells = {c["channel"]: c for c in profiles[volume]["messaging_response"]}
    assert (cells["email"]["received"], cells["email"]["responses"]) == (40, 8)
    assert (cells["whatsapp"]["received"], cells["whatsapp"]["responses"]) == (8, 7)
    assert cells["whatsapp"]["lift"] > 1 > cells["email"]["lift"]
    assert profiles[thin]["preferred_messaging_channel"] == UNKNOWN
    assert profiles[silent]["preferred_messaging_channel"] is None  # never messaged: nothing to say
    assert profiles[silent]["messaging_response"] == []


def test_best_hour_follows_own_activity_not_the_senders_clock(runtime: Runtime) -> None:
    rng = np.random.default_rng(4)
    world, truth = World(), {}
    for _ in range(40):
        pid, hour = world.person(), float(rng.uniform(8.0, 22.0))
        truth[pid] = hour
        for day in range(10):
            at = START + timedelta(days=day, hours=float(np.clip(rng.normal(hour, 1.5), 0.0, 23.9)))
            world.add(pid, at, event=spec.PRODUCT_VIEWED, product_id=f"SKU-{day}", category="shoes")
        for day in range(20):  # e-mails opened at 10:20 every day: the sender's hour, not the person's
            _message(world, pid, "email", day, True)
    once = world.person()
    world.add(once, START + timedelta(hours=15), event=spec.PRODUCT_VIEWED, product_id="SKU-1", category="shoes")
    for day in range(20):
        _message(world, once, "email", day, True)

    profiles = _profiles(runtime, world)
    close = [abs(profiles[pid]["best_hour"] + 0.5 - hour) <= 2.0 for pid, hour in truth.items()]
    assert sum(close) / len(close) >= 0.9, [(profiles[p]["best_hour"], round(h, 1)) for p, h in truth.items()]
    late = [pid for pid, hour in truth.items() if hour >= 18]
    assert late and all(profiles[pid]["best_hour"] >= 15 for pid in late)  # not pulled to the 10:00 sends
    assert profiles[once]["best_hour"] is None  # one view is too little: unknown, not 10 nor 15


def test_most_responsive_promotion_corrects_for_the_channel(runtime: Runtime) -> None:
    rng = np.random.default_rng(5)
    world, truth = World(), {}
    campaign = 0
    for i in range(40):
        pid, favourite = world.person(), PROMOTIONS[i % 4]
        truth[pid] = favourite
        for day in range(40):
            promotion = PROMOTIONS[day % 4]
            # every promotion goes by push, except that events also go by WhatsApp, whose base rate is far
            # higher: counting raw rates would make everyone look event-responsive
            channel = "whatsapp" if promotion == "event" and day % 8 == 3 else "push"
            base = 0.6 if channel == "whatsapp" else 0.12
            rate = min(base * (3.0 if promotion == favourite else 1.0), 0.95)
            campaign += 1
            _message(
                world, pid, channel, day, bool(rng.random() < rate), promotion=promotion, campaign_id=f"C{campaign}"
            )
    thin = world.person()
    for day in range(4):
        _message(world, thin, "push", day, day == 0, promotion=PROMOTIONS[day], campaign_id=f"T{day}")

    profiles = _profiles(runtime, world)
    got = {pid: profiles[pid]["responsive_promotion"] for pid in truth}
    assert sum(got[pid] == favourite for pid, favourite in truth.items()) / len(truth) >= 0.75, got
    event_fans = [pid for pid, favourite in truth.items() if favourite == "event"]
    others = [pid for pid in truth if pid not in event_fans]
    assert sum(got[pid] == "event" for pid in others) <= 3  # the channel's base rate is not taken for a liking
    assert profiles[thin]["responsive_promotion"] == UNKNOWN


@pytest.mark.parametrize("channel", MESSAGING_CHANNELS)
def test_a_single_channel_person_gets_that_channel_once_there_is_enough(runtime: Runtime, channel: str) -> None:
    world = World()
    enough, few = world.person(), world.person()
    for day in range(6):
        _message(world, enough, channel, day, day % 2 == 0)
    for day in range(2):
        _message(world, few, channel, day, True)
    profiles = _profiles(runtime, world)
    assert profiles[enough]["preferred_messaging_channel"] == channel
    assert profiles[few]["preferred_messaging_channel"] == UNKNOWN
