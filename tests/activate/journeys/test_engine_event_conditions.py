"""A branch on the person's events, walked by the engine over a real event log: the batch's events are read once,
only the names the journeys' conditions count and only the day partitions of their longest window, and every run
gets the branch it would get from the whole log (issue 21: the demo's win-back read the whole log per run)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from omniweave.activate.journeys.model import Branch, BranchArm, Condition, Entry, EventCount, Exit, Journey, Step
from omniweave.activate.service.journeys import JourneyEngine, publish
from omniweave.runtime import Runtime
from omniweave.storage.eventlog import events_to_table
from omniweave.storage.ops.tables.journeys import journey_runs
from tests.segment_events import segment_event

from .conftest import NOON, Clock

DAY = 86400.0


def _stamp(days_before: float) -> str:
    return (NOON - timedelta(days=days_before)).isoformat().replace("+00:00", "Z")


def _branch(name: str, rule: EventCount, yes: str, no: str) -> Journey:
    steps = {
        "b": Step("b", Branch((BranchArm(Condition(events=(rule,)), "yes"),), "no")),
        "yes": Step("yes", Exit(yes)),
        "no": Step("no", Exit(no)),
    }
    return Journey(name=name, entry=Entry("api"), start="b", steps=steps)


def _ends(rt: Runtime, journey: str) -> dict[str, str]:
    with rt.store.engine.connect() as conn:
        query = sa.select(journey_runs.c.person_id, journey_runs.c.end_reason).where(journey_runs.c.journey == journey)
        return {str(p): str(r) for p, r in conn.execute(query)}


@pytest.mark.parametrize("order_days_before", [0.25, 2.0])
def test_a_branch_on_recent_orders_sees_the_window_and_names_its_rules_count(
    world: Runtime, order_days_before: float
) -> None:
    """P1 ordered `order_days_before` days ago (inside the 1-day window, or in an older day partition), P2 viewed a
    product an hour ago (another name), P3 ordered 40 days ago; P4 visited a store 200 days ago, which only the
    second journey (a rule without `within`: up to 365 days) counts. Both journeys' runs are in one batch."""
    events = [
        segment_event(101, _stamp(order_days_before), received_at=NOON, event="Order Completed", user="u1"),
        segment_event(102, _stamp(1 / 24), received_at=NOON, event="Product Viewed", user="u2"),
        segment_event(103, _stamp(40), received_at=NOON, event="Order Completed", user="u3"),
        segment_event(104, _stamp(200), received_at=NOON, event="Store Visited", user="u4"),
    ]
    world.log.append("events", events_to_table(events, "test"), "history")
    publish(world, _branch("ordered", EventCount("Order Completed", within=DAY), "returned", "lapsed"))
    publish(world, _branch("visited", EventCount("Store Visited"), "visitor", "never"))
    engine = JourneyEngine(world, fake=True, clock=Clock(NOON.timestamp()))
    persons = ["P1", "P2", "P3", "P4"]
    engine.enter_many("ordered", persons, "k")
    engine.enter_many("visited", persons, "k")
    while engine.step():
        pass
    recent = order_days_before <= 1
    assert _ends(world, "ordered") == {"P1": "returned" if recent else "lapsed", "P2": "lapsed", "P3": "lapsed"} | {
        "P4": "lapsed"
    }
    assert _ends(world, "visited") == {"P1": "never", "P2": "never", "P3": "never", "P4": "visitor"}
