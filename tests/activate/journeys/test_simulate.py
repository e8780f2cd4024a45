"""`simulate`: the warehouse's recent events through a draft in a throw-away store — counts match a hand
count on a tiny log, and nothing is sent or written to the real store."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from omniweave.activate.journeys.definition import parse_journey_text
from omniweave.activate.service.journey_sim import simulate, summary_lines
from omniweave.errors import InputError
from omniweave.runtime import Runtime
from omniweave.storage.eventlog import events_to_table
from omniweave.storage.ops.tables import sends
from omniweave.storage.ops.tables.journeys import journey_runs, journey_versions
from omniweave.storage.ops.tables.policy import policy_decisions
from tests.segment_events import segment_event

from .conftest import NOON

DRAFT = """
name: cart_draft
entry: {event: Product Added, where: {cart_id: {exists: true}}, correlate: cart_id}
re_entry: always
goal: {event: Order Completed, within: 7d, correlate: cart_id}
start: wait_hour
steps:
  wait_hour: {wait: 1h, next: email}
  email: {send: {message: cart_reminder, channel: email}, next: done}
  done: {exit: done}
"""


def track(n: int, at: Any, user: str, event: str, **props: Any) -> dict[str, Any]:
    return segment_event(n, at.isoformat(), received_at=at, type="track", user=user, event=event, **props)


def counts(rt: Runtime) -> tuple[int, int, int, int]:
    with rt.store.engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (sends, journey_runs, journey_versions, policy_decisions)
        )


def test_simulate_counts_match_a_hand_count_and_nothing_is_sent(world: Runtime) -> None:
    day = timedelta(days=1)
    log = [
        track(101, NOON - 3 * day, "u1", "Product Added", cart_id="c1"),  # sent at 13:00
        track(102, NOON - 2 * day, "u2", "Product Added", cart_id="c2"),
        track(103, NOON - 2 * day + timedelta(minutes=30), "u2", "Order Completed", cart_id="c2"),  # converts
        track(104, NOON - day - timedelta(hours=10), "u3", "Product Added", cart_id="c3"),  # 02:00: due in quiet hours
        track(105, NOON - 10 * day, "u4", "Product Added", cart_id="c4"),  # before the window
    ]
    world.log.append("events", events_to_table(log, "test"), "cart")
    before = counts(world)
    draft = parse_journey_text(DRAFT, "draft")
    result = simulate(world, draft, days=7, until=NOON.timestamp())
    assert result.events == 4
    assert result.entries == 3
    assert result.sends == {"email": 2}  # u1 at 13:00, u3 at 08:00 after the quiet hours
    assert result.conversions == 1  # u2's cart ordered before the hour was up
    assert result.quiet_hour_hits == 1 and result.cap_hits == 0
    assert list(result.rescheduled) and "quiet hours" in next(iter(result.rescheduled))
    assert result.held_out == 0
    assert result.runs == {"exited": 2, "converted": 1}
    assert counts(world) == before == (0, 0, 0, 0)  # the real store: untouched
    text = "\n".join(summary_lines(result))
    assert "entries: 3" in text and "goal conversions: 1" in text


def test_simulate_rejects_a_bad_number_of_days(world: Runtime) -> None:
    with pytest.raises(InputError, match="days"):
        simulate(world, parse_journey_text(DRAFT, "draft"), days=0)
