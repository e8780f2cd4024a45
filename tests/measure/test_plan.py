"""The campaign plan (measure/plan.py, measure/service/plan.py): checks naming every problem's field, the TOML
round trip, the period numbering, and the tracking against an independent computation (numpy's least squares)."""

from __future__ import annotations

import tomllib
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from omniweave.measure import plan as model
from omniweave.measure.kpis import period_start
from omniweave.measure.service import plan as plans
from omniweave.runtime import Runtime
from omniweave.settings import Settings

CATALOGUE = plans.catalogue_names()
CHANNELS = plans.CHOOSABLE_CHANNELS
PERSONAS = frozenset({"Store loyalists", "store_loyalists", "Digital natives"})


def document(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "name": 'Autumn "in store"',
        "period": "month",
        "personas": ["Store loyalists", "Digital natives"],
        "channels": ["email", "store"],
        "budget": {"total": 25000, "currency": "EUR"},
        "goals": [
            {
                "name": f"Goal {i}",
                "kpis": [
                    {"kpi": "store_visitors", "target": 400, "by": date(2026, 11, 30)},
                    {"kpi": "revenue_total", "target": 60000.5, "by": date(2026, 12, 31), "period": "week"},
                    {"kpi": "customer_acquisition_cost", "target": 12, "by": date(2026, 12, 31), "direction": "down"},
                ],
            }
            for i in range(3)
        ],
    }
    doc.update(changes)
    return doc


def parse(doc: object, personas: frozenset[str] | None = PERSONAS) -> model.Plan:
    return model.parse_plan(doc, catalogue=CATALOGUE, channels=CHANNELS, personas=personas)


def problems_of(doc: object) -> dict[str, str]:
    with pytest.raises(model.PlanError) as caught:
        parse(doc)
    return dict(caught.value.problems)


def test_a_plan_survives_its_toml_and_its_document() -> None:
    plan = parse(document())
    assert parse(tomllib.loads(model.plan_toml(plan))) == plan
    assert parse(model.plan_document(plan)) == plan
    assert plan.goals[0].kpis[2].way == "down" and plan.goals[0].kpis[0].way == "up"
    assert plan.goals[0].kpis[1].period_of(plan) == "week" and plan.goals[0].kpis[0].period_of(plan) == "month"
    odd = 'quote " back \\ newline \n tab \t bell \x07 del \x7f 中文 ✓'
    tricky = parse(document(name=odd))
    assert parse(tomllib.loads(model.plan_toml(tricky))).name == odd.strip()


def test_every_problem_is_named_by_its_field() -> None:
    doc = document(channels=["email"], personas=["Nobody"], budget={"total": -5, "currency": "euro"})
    goals = doc["goals"]
    assert isinstance(goals, list)
    goals[1]["kpis"][0]["target"] = "abc"
    goals[1]["kpis"][1]["by"] = "next week"
    goals[2]["kpis"][0]["kpi"] = "footfall"
    goals[2]["kpis"][1]["period"] = "fortnight"
    goals[0]["kpis"][2]["kpi"] = "store_visitors"
    goals[0]["colour"] = "red"
    found = problems_of(doc)
    assert found["goals[1].kpis[0].target"] == "expected a number; got 'abc'"
    assert found["goals[1].kpis[1].by"].startswith("expected a day as YYYY-MM-DD")
    assert found["goals[2].kpis[0].kpi"].startswith("unknown KPI 'footfall'; expected one of ")
    assert found["goals[2].kpis[1].period"] == "expected one of day, week, month; got 'fortnight'"
    assert found["goals[0].kpis[2].kpi"] == "'store_visitors' is already a KPI of this goal"
    assert found["goals[0].colour"].startswith("unknown field")
    assert found["channels"] == "expected 2 to 3 channels; got 1"
    assert found["personas[0]"].startswith("unknown persona 'Nobody'; expected one of: Digital natives")
    assert found["budget.total"] == "expected a number above 0; got -5"
    assert found["budget.currency"].startswith("expected a three-letter code")
    with pytest.raises(model.PlanError) as caught:
        parse(doc)
    assert caught.value.field == next(iter(found))  # the InputError names the first field
    assert "goals[1].kpis[0].target: expected a number" in str(caught.value)


def test_counts_of_goals_kpis_and_channels_are_the_method_s() -> None:
    goals = document()["goals"]
    assert isinstance(goals, list)
    assert "goals" in problems_of(document(goals=goals[:2]))
    assert problems_of(document(goals=[*goals, *goals]))["goals"] == "expected 3 to 5 goals; got 6"
    short = [{**g, "kpis": g["kpis"][:2]} for g in goals]
    assert problems_of(document(goals=short))["goals[0].kpis"] == "expected 3 to 5 KPIs; got 2"
    assert problems_of(document(channels=["email", "sms", "store", "web"]))["channels"].endswith("got 4")
    assert problems_of(document(channels=["email", "email"]))["channels[1]"] == "'email' is listed twice"
    assert problems_of(document(channels=["email", "fax"]))["channels[1]"].startswith("unknown channel 'fax'")
    assert "name" in problems_of(document(name="  "))
    missing = [{**g, "kpis": [{"kpi": "sessions"}, *g["kpis"][1:]]} for g in goals]
    assert problems_of(document(goals=missing))["goals[0].kpis[0].target"] == "missing"
    assert parse(document(personas=["store_loyalists"])).personas == ("store_loyalists",)  # an id does too
    assert parse(document(personas=["Gone"]), personas=None).personas == ("Gone",)  # not checked when reading


def test_a_syntax_error_names_the_line() -> None:
    with pytest.raises(model.PlanError) as caught:
        model.read_toml('name = "x"\nperiod = \n')
    assert "line 2" in caught.value.problems[0][1]


def test_period_numbers_are_the_kpi_report_s() -> None:
    day = date(2024, 12, 20)
    for _ in range(800):
        for period in model.PERIODS:
            index = model.period_index(day, period)
            assert period_start(index, period) == model.period_first_day(day, period)
            assert period_start(index, period) <= day < period_start(index + 1, period)
        day += timedelta(days=1)


def test_the_linear_trend_is_least_squares() -> None:
    rng = np.random.default_rng(3)
    for n in range(1, 9):
        x = np.sort(rng.choice(60, size=n, replace=False)).astype(float)
        y = rng.normal(100, 30, size=n)
        value, slope = model.linear_trend(list(zip(x.tolist(), y.tolist(), strict=True)), 75)
        if n == 1:
            assert (value, slope) == (pytest.approx(y[0]), 0.0)
            continue
        fitted_slope, intercept = np.polyfit(x, y, 1)
        assert slope == pytest.approx(fitted_slope, rel=1e-9, abs=1e-9)
        assert value == pytest.approx(intercept + fitted_slope * 75, rel=1e-9)


def _weekly(plan_doc: dict[str, object]) -> model.Plan:
    return parse(plan_doc)


def test_tracking_statuses_against_an_independent_computation() -> None:
    monday = date(2026, 9, 7)
    values = [100.0, 112.0, 109.0, 130.0, 128.0, 141.0, 150.0, 155.0]
    series = [model.Point(monday + timedelta(weeks=i), v) for i, v in enumerate(values)]
    series.insert(0, model.Point(monday - timedelta(weeks=1), 3.0, partial=True))  # left out: partial
    series.append(model.Point(monday + timedelta(weeks=8), 20.0, partial=True))
    kpi = "page_views"
    far = monday + timedelta(weeks=12, days=3)  # a Thursday, 12 weeks on
    used = values[-model.TREND_PERIODS :]
    x = np.arange(len(values) - len(used), len(values), dtype=float)
    slope, intercept = np.polyfit(x, used, 1)
    expected = intercept + slope * 12
    kpis = [
        {"kpi": kpi, "target": expected - 1, "by": far},  # on track
        {"kpi": "sessions", "target": expected + 1, "by": far},  # behind
        {"kpi": "store_visits", "target": 129.0, "by": monday + timedelta(weeks=3, days=6)},  # met: 130 that week
        {"kpi": "revenue_total", "target": 131.0, "by": monday + timedelta(weeks=3)},  # missed
        {"kpi": "customer_acquisition_cost", "target": expected + 1, "by": far},  # a ceiling: on track
    ]
    doc = document(period="week", goals=[{"name": "g", "kpis": kpis}] * 3)
    plan = _weekly(doc)
    got = model.track(plan, {(k, "week"): series for k in CATALOGUE if k != "new_customers"})
    first = got[:5]
    assert [k.status for k in first] == ["on track", "behind", "met", "missed", "on track"]
    assert first[0].projection == pytest.approx(expected, rel=1e-12)
    assert first[0].slope == pytest.approx(slope, rel=1e-9)
    assert first[0].current == 155.0 and first[0].current_period == monday + timedelta(weeks=7)
    assert [p.value for p in first[0].basis] == used
    assert first[2].projection == 130.0 and first[2].current_period == monday + timedelta(weeks=3)
    assert first[0].target_period == monday + timedelta(weeks=12)
    assert first[0].gap == pytest.approx(1.0) and first[1].gap == pytest.approx(-1.0)
    # the trend uses only the periods before the target's: a target inside the data ignores later ones
    early = model.track_kpi(plan, 0, model.KpiTarget(kpi, 1.0, monday + timedelta(weeks=8, days=2)), series)
    assert early.status == "on track" and early.basis[-1].start == monday + timedelta(weeks=7)
    # nothing whole before the target's period, or no values at all: no data
    assert model.track_kpi(plan, 0, model.KpiTarget(kpi, 1.0, monday - timedelta(days=3)), series).status == "no data"
    assert model.track(plan, {})[0].status == "no data"
    # one whole period: a flat line
    flat = model.track_kpi(plan, 0, model.KpiTarget(kpi, 99.0, far), series[1:2])
    assert (flat.projection, flat.slope, flat.status) == (100.0, 0.0, "on track")


def test_saving_is_atomic_checked_and_refuses_a_stale_version(tmp_path: Path) -> None:
    runtime = Runtime(Settings(home=str(tmp_path)))
    assert plans.read_plan(runtime).text is None
    with pytest.raises(Exception, match="no plan yet"):
        plans.load_plan(runtime)
    first = plans.save_plan(runtime, document(), personas=PERSONAS, expected_version="")
    path = tmp_path / "plan.toml"
    assert path.read_text() == first.text and plans.load_plan(runtime) == first.plan
    assert plans.read_plan(runtime).version == first.version == plans.version_of(path.read_bytes())
    saved = path.read_bytes()
    # a bad plan, and a save from a stale page, leave the file as it was
    with pytest.raises(model.PlanError):
        plans.save_plan(runtime, document(channels=[]), personas=PERSONAS, expected_version=first.version)
    with pytest.raises(plans.PlanConflict):
        plans.save_plan(runtime, document(name="Other"), personas=PERSONAS, expected_version="")
    assert path.read_bytes() == saved
    # TOML text is kept as written (comments too); the file it replaces is kept as plan.toml.previous
    text = "# our plan\n" + model.plan_toml(parse(document(name="Winter")))
    second = plans.save_plan(runtime, text, personas=PERSONAS, expected_version=first.version)
    assert path.read_text() == text and second.plan is not None and second.plan.name == "Winter"
    assert (tmp_path / "plan.toml.previous").read_bytes() == saved
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # a file edited by hand into a bad state reads with its problems, and its personas are only warned about
    path.write_text("name = 3\n")
    broken = plans.read_plan(runtime)
    assert broken.plan is None and dict(broken.problems)["name"] == "expected a non-empty text; got 3"
    path.write_text(model.plan_toml(parse(document(personas=["Renamed", "Digital natives"]), personas=None)))
    read = plans.read_plan(runtime, PERSONAS)
    assert read.plan is not None and read.warnings == (("personas[0]", "'Renamed' is no longer a known persona"),)
