"""Experiments read from the event log: exposures, conversions after them, the statistics, the CLI."""

from __future__ import annotations

import itertools
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from omniweave.errors import InputError
from omniweave.events import spec
from omniweave.events.normalize import normalize_event
from omniweave.measure import experiments as stats
from omniweave.measure.service.experiments import analyze, experiment_units, list_experiments
from omniweave.profiles.service.build import write_identities
from omniweave.storage.eventlog import events_to_table

START = datetime(2026, 3, 1, tzinfo=UTC)


def _event(n: int, at: datetime, event: str, user: str, **properties: Any) -> dict[str, Any]:
    raw = {
        "type": "track",
        "event": event,
        "userId": user,
        "messageId": f"x{n}",
        "properties": properties,
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    # received when it happened (a time more than 24 h past its receipt would be clamped to the receipt)
    return normalize_event(raw, received_at=max(START, at))


def world() -> tuple[list[dict[str, Any]], dict[str, tuple[str, datetime, list[tuple[float, float]]]]]:
    """60 persons in arms A and B of "hero": per person (arm, first exposure, orders as (days after it, value))."""
    events, truth, n = [], {}, 0
    for i in range(60):
        user, arm = f"u{i}", "A" if i % 2 else "B"
        seen = START + timedelta(days=i % 5, hours=i)
        n += 2  # a second view of the same arm changes nothing
        events.append(_event(n - 1, seen, spec.EXPERIMENT_VIEWED, user, experiment_id="hero", variation_id=arm))
        events.append(
            _event(n, seen + timedelta(hours=1), spec.EXPERIMENT_VIEWED, user, experiment_id="hero", variation_id=arm)
        )
        orders = []
        if i % 3 == 0 or (arm == "B" and i % 4 == 0):  # B converts more
            orders.append((2.0, 10.0 + i))
        if i % 7 == 0:  # bought before the exposure: not a conversion of the test
            orders.append((-1.0, 99.0))
        if i % 11 == 0:  # bought 40 days later: outside a 30-day window
            orders.append((40.0, 5.0))
        for days, value in orders:
            n += 1
            events.append(_event(n, seen + timedelta(days=days), spec.ORDER_COMPLETED, user, revenue=value))
        truth[f"P{i:02d}"] = (arm, seen, orders)
    # a person who saw both arms is left out; another experiment is not mixed in
    events.append(_event(900, START, spec.EXPERIMENT_VIEWED, "u900", experiment_id="hero", variation_id="A"))
    events.append(
        _event(901, START + timedelta(hours=2), spec.EXPERIMENT_VIEWED, "u900", experiment_id="hero", variation_id="B")
    )
    events.append(_event(902, START, spec.EXPERIMENT_VIEWED, "u1", experiment_id="other", variation_name="x"))
    return events, truth


def expected(truth, window: float | None) -> dict[str, tuple[str, bool, float]]:
    out = {}
    for person, (arm, _, orders) in truth.items():
        counted = [v for days, v in orders if days >= 0 and (window is None or days < window)]
        out[person] = (arm, bool(counted), sum(counted))
    return out


@pytest.fixture
def seeded(runtime):
    events, truth = world()
    runtime.log.append("events", events_to_table(events, "test"), "world")
    write_identities(runtime, [("user_id", f"u{i}", f"P{i:02d}") for i in range(60)] + [("user_id", "u900", "P900")])
    return runtime, truth


@pytest.mark.parametrize("window", [None, 30])
def test_units_follow_the_first_exposure_and_count_only_later_conversions(seeded, window):
    runtime, truth = seeded
    rows = {r["person_id"]: r for r in experiment_units(runtime, "hero", window_days=window).to_pylist()}
    assert rows["P900"]["arm"] is None and len(rows) == 61
    for person, (arm, converted, revenue) in expected(truth, window).items():
        assert rows[person]["arm"] == arm
        assert (rows[person]["converted_at"] is not None) == converted, person
        assert rows[person]["revenue"] == pytest.approx(revenue), person


def test_the_statistics_are_core_experiments_on_the_counts(seeded):
    runtime, truth = seeded
    report = analyze(experiment_units(runtime, "hero", window_days=30), "hero", control="A", tau=0.05)
    want = expected(truth, 30)
    figures = {a.name: a for a in report.arms}
    for arm in ("A", "B"):
        members = [v for v in want.values() if v[0] == arm]
        assert (figures[arm].units, figures[arm].conversions) == (len(members), sum(c for _, c, _ in members))
        assert figures[arm].revenue == pytest.approx(sum(r for _, _, r in members))
    assert report.mixed_units == 1
    arms = [stats.ConversionArm(a, figures[a].units, figures[a].conversions) for a in ("A", "B")]
    assert report.conversion == stats.compare_conversions(arms, control="A")
    assert report.bayesian == stats.bayesian_conversions(arms, control="A")
    looks = report.sequential["B"].looks
    days = {seen.date() for _, seen, _ in truth.values()}
    assert len(looks) == len(days) and looks[-1].control_units == figures["A"].units  # one look per exposure day
    assert all(later.p_value <= earlier.p_value for earlier, later in itertools.pairwise(looks))


def test_bad_requests_say_what_is_expected(seeded):
    runtime, _ = seeded
    with pytest.raises(InputError, match="expected at least 2"):
        analyze(experiment_units(runtime, "nope"), "nope")
    with pytest.raises(InputError, match="expected one of the arms A, B"):
        analyze(experiment_units(runtime, "hero"), "hero", control="C")
    with pytest.raises(InputError, match="days > 0"):
        experiment_units(runtime, "hero", window_days=0)
    assert list_experiments(runtime) == [("hero", 2, 122), ("other", 1, 1)]


def test_cli_analyze_prints_json(seeded, settings):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "omniweave",
            "--home",
            settings.home,
            "experiments",
            "analyze",
            "hero",
            "--control",
            "A",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)
    assert report["control"] == "A" and [a["name"] for a in report["arms"]] == ["A", "B"]
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "omniweave",
            "--home",
            settings.home,
            "experiments",
            "analyze",
            "hero",
            "--control",
            "Z",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and "expected one of the arms" in bad.stderr
