"""`journey_stats` and `explain` over runs the real engine made (SQLite and PostgreSQL): per-node counts, the
holdout against the treated with the experiments' z-test, and each person's steps and policy decisions."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest

from omniweave.activate.journeys import machine as M
from omniweave.activate.journeys.definition import parse_journey
from omniweave.activate.service.journey_stats import explain, journey_stats, resolve_person
from omniweave.activate.service.journeys import JourneyEngine, publish
from omniweave.collect.emit import emit
from omniweave.errors import InputError
from omniweave.measure.experiments import ConversionArm, two_proportion_ztest
from omniweave.runtime import Runtime

from .conftest import NOON, Clock

PROMO: dict[str, Any] = {
    "name": "promo",
    "entry": {"api": True},
    "holdout": 0.5,
    "goal": {"event": "Order Completed", "within": "7d"},
    "start": "email",
    "steps": {
        "email": {"send": {"message": "store_event_invitation", "channel": "email"}, "next": "later"},
        "later": {"wait": "2d", "next": "done"},
        "done": {"exit": "done"},
    },
}


def z_test(control: tuple[str, int, int], treated: tuple[str, int, int]) -> dict[str, Any]:
    return asdict(two_proportion_ztest(ConversionArm(*control), ConversionArm(*treated)))


def drain(e: JourneyEngine) -> None:
    while e.consume() or e.step():
        pass
    e.dispatch()


def test_stats_count_per_node_and_compare_the_holdout(world: Runtime) -> None:
    journey = parse_journey(PROMO, "promo")
    persons = ["P1", "P2", "P3", "P4"]
    held = {p for p in persons if M.in_holdout(journey, p)}
    assert 0 < len(held) < 4  # both groups present (the hash of this journey and these persons)
    publish(world, journey)
    e = JourneyEngine(world, fake=True, clock=Clock(NOON.timestamp()))
    assert e.enter_many("promo", persons, "launch") == 4
    drain(e)
    order = [
        {"type": "track", "messageId": f"o{i}", "userId": f"u{i}", "event": "Order Completed", "properties": {}}
        for i in (1, 2)
    ]
    emit(world.store, "shop", order)
    drain(e)

    result = journey_stats(world, "promo", compare=z_test)
    converted = {"P1", "P2"}
    treated = (4 - len(held), len(converted - held))
    held_out = (len(held), len(converted & held))
    assert result.treated == treated and result.held_out == held_out
    assert result.runs == {"converted": 2, "waiting": 2} or result.runs == {"converted": 2, "active": 2}
    nodes = {n.node: n for n in result.nodes}
    assert nodes["email"].entered == 4 and nodes["email"].sent == treated[0]
    assert nodes["email"].other == {"held_out": len(held)} and nodes["email"].skipped == {}
    assert nodes["later"].converted == 2
    assert result.lift == z_test(("held_out", *held_out), ("treated", *treated))
    assert journey_stats(world, "promo").lift is None  # no test handed in: counts only

    treated_person = sorted(set(persons) - held)[0]
    why = explain(world, treated_person)
    run = why.runs[0]
    assert [s["outcome"] for s in run.steps][:3] == ["entered", "sent", "waited"]
    assert [d["outcome"] for d in run.decisions] == ["send"] and run.decisions[0]["key"].endswith(run.run_id)
    held_person = sorted(held)[0]
    held_run = explain(world, held_person, journey="promo").runs[0]
    assert held_run.decisions == [] and any("in the holdout" in (s["reason"] or "") for s in held_run.steps)
    assert explain(world, "P1", journey="other").runs == ()


def test_unknown_persons_and_journeys_are_named(world: Runtime) -> None:
    assert resolve_person(world, "p3@example.com") == "P3"
    assert resolve_person(world, "u2") == "P2"
    with pytest.raises(InputError, match="no person known by 'ghost'") as caught:
        explain(world, "ghost")
    assert caught.value.field == "person"
    with pytest.raises(InputError, match="no published journey 'nope'"):
        journey_stats(world, "nope")
