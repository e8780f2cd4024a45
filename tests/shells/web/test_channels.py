"""The Channels page against the CLI on the same demo world: the KPIs by channel are `omniweave kpis --by channel`'s,
the attribution tables `omniweave attribution`'s for the period's days, and (on a copy with a saved media-mix fit)
the model's figures and the budget split `omniweave mmm fit`'s and `omniweave budget`'s."""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.datastructures import QueryParams
from typer.testing import CliRunner

from omniweave.errors import InputError
from omniweave.measure.service.channel_figures import channel_reach
from omniweave.privacy.roles import ROLES, user_principal
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.shells.cli.main import app as cli
from omniweave.shells.web import view
from omniweave.shells.web.app import Context
from omniweave.shells.web.pages.channels import add_media_mix, period_end
from tests.shells.web.conftest import Dashboard


def _cli(home: Path, *args: str) -> Any:
    """The CLI's JSON for `args`, run in this process (no interpreter start)."""
    done = CliRunner().invoke(cli, ["--home", str(home), *args, "--format", "json"], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _num(text: str) -> float | None:
    return None if text == "" else float(text)


def test_channels_needs_a_session_and_every_role_may_open_it(dashboard: Dashboard) -> None:
    answer = dashboard.client(None).get("/app/channels?period=month")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/app/login?next=%2Fapp%2Fchannels%3Fperiod%3Dmonth"
    for role in ROLES:  # aggregate figures only: no personal data to mask, every role reads them
        page = dashboard.client(role).get("/app/channels")
        assert page.status_code == 200, (role, page.text)
        assert "<h1>Channels</h1>" in page.text and 'id="chosen-period"' in page.text


def test_channels_show_the_cli_numbers_for_a_period(dashboard: Dashboard) -> None:
    client = dashboard.client("marketer")
    kpis = _cli(dashboard.home, "kpis", "--by", "channel", "--period", "month")
    periods = sorted({r["period"] for r in kpis})
    chosen = periods[-2]  # not the latest: the page is asked for it
    last = period_end(date.fromisoformat(chosen), "month") - timedelta(days=1)
    attribution = _cli(dashboard.home, "attribution", "--since", chosen, "--until", last.isoformat())
    query = f"/app/channels?period=month&at={chosen}&model=linear"
    page = client.get(query)
    assert page.status_code == 200, page.text
    assert f'<strong id="chosen-period">{chosen}</strong>' in page.text
    assert 'id="no-mmm"' in page.text and "omniweave mmm fit" in page.text  # the demo world has no saved fit

    # the KPI catalogue by channel: a row per KPI, a column per channel, each cell the CLI's value
    table = _csv(client.get(query + "&csv=kpis").text)
    expected = {(r["kpi"], r["dimension_value"]): r for r in kpis if r["period"] == chosen}
    shown = {(row["kpi"], c): _num(v) for row in table for c, v in row.items() if c not in ("group", "kpi", "unit")}
    assert {k for k, v in shown.items() if v is not None} == set(expected)
    for key, want in expected.items():
        assert shown[key] == pytest.approx(want["value"], rel=1e-9), key

    # every attribution model side by side: conversions and revenue credited, and ROI, as the CLI credits them
    models = attribution["models"]
    for table_id, measure in (("attribution", "conversions"), ("attribution_value", "value")):
        rows = _csv(client.get(query + f"&csv={table_id}").text)
        assert [r["channel"] for r in rows] == list(models["markov"]["channels"])
        assert set(rows[0]) == {"channel", *models}
        for row in rows:
            for model, credit in models.items():
                assert float(row[model]) == pytest.approx(credit["channels"][row["channel"]][measure], rel=1e-9)
    returns = _csv(client.get(query + "&csv=attribution_roi").text)
    assert {r["channel"] for r in returns} == {c for c, s in attribution["spend"].items() if s > 0}
    for row in returns:
        assert float(row["spend"]) == pytest.approx(attribution["spend"][row["channel"]], rel=1e-9)
        for model, credit in models.items():
            assert float(row[model]) == pytest.approx(credit["returns"][row["channel"]]["roi"], rel=1e-9, abs=1e-12)

    # per channel: reach and engagement (channel_reach), linear's credit and ROI, the period's spend
    runtime = Runtime(Settings(home=str(dashboard.home)))
    try:
        reach = {r["channel"]: r for r in channel_reach(runtime, period="month").rows if r["period"] == chosen}
    finally:
        runtime.close()
    summary = {r["channel"]: r for r in _csv(client.get(query + "&csv=channels").text)}
    linear = models["linear"]
    assert set(summary) == {*reach, *linear["channels"], *attribution["spend"]}
    for name, row in summary.items():
        r = reach.get(name, {})
        assert _num(row["persons reached"]) == r.get("reached") and _num(row["persons engaged"]) == r.get("engaged")
        assert _num(row["impressions (reported)"]) == r.get("impressions")
        credit = linear["channels"].get(name)
        assert _num(row["conversions"]) == (pytest.approx(credit["conversions"], rel=1e-9) if credit else None)
        assert _num(row["credited revenue"]) == (pytest.approx(credit["value"], rel=1e-9) if credit else None)
        earned = linear["returns"].get(name)
        assert _num(row["spend"]) == (
            pytest.approx(attribution["spend"][name]) if name in attribution["spend"] else None
        )
        assert _num(row["ROI"]) == (pytest.approx(earned["roi"], rel=1e-9, abs=1e-12) if earned else None)
    spend = {r["dimension_value"]: r["value"] for r in expected.values() if r["kpi"] == "marketing_spend"}
    assert {c: float(summary[c]["spend"]) for c in spend} == pytest.approx(spend)  # the KPI catalogue's spend too


def test_channels_refuse_bad_parameters_naming_the_field(dashboard: Dashboard) -> None:
    client = dashboard.client("analyst")
    for query, field in (
        ("period=fortnight", "period"),
        ("period=month&at=1999-01-01", "at"),
        ("at=yesterday", "at"),
        ("model=last_click", "model"),
        ("total=lots", "total"),
        ("total=-5", "total"),
    ):
        bad = client.get(f"/app/channels?{query}")
        assert bad.status_code == 400, query
        assert f"<code>{field}</code>" in bad.text, query
    assert "model must be one of first_touch" in client.get("/app/channels?model=last_click").text
    missing = client.get("/app/channels?csv=budget")  # no media-mix fit saved: no budget table
    assert missing.status_code == 404 and "no table &#39;budget&#39;" in missing.text


def test_media_mix_section_shows_the_saved_fit_and_the_budget_split(dashboard: Dashboard, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(dashboard.home, home)
    fit = _cli(home, "mmm", "fit", "--bootstrap", "10")
    budget = _cli(home, "budget", "--total", "400")
    runtime = Runtime(Settings(home=str(home)))
    try:
        principal = user_principal("u1", "marketer@example.com", "marketer")
        out = view.Page("dashboard/channels.html", "Channels")
        add_media_mix(Context(runtime, principal, QueryParams("total=400")), out, 400.0)
        with pytest.raises(InputError) as too_much:  # beyond every channel's +50 %: the page's field is named
            add_media_mix(Context(runtime, principal, QueryParams("total=1e9")), view.Page("x", "x"), 1e9)
        assert too_much.value.field == "total"
    finally:
        runtime.close()
    assert out.context["mmm"] == json.loads(json.dumps(fit))  # the fit `omniweave mmm fit` saved

    channels = {row[0]: row for row in out.tables["mmm_channels"].rows}
    columns = out.tables["mmm_channels"].columns
    assert list(channels) == [r["channel"] for r in fit["channels"]]
    for record in fit["channels"]:
        for at, name in enumerate(columns):
            assert channels[record["channel"]][at] == record[name], name

    contributions = out.tables["mmm_contributions"]
    assert contributions.column("period") == fit["periods"]
    assert contributions.column("actual") == fit["series"]["actual"]
    for record in fit["channels"]:
        assert contributions.column(record["channel"]) == fit["series"][f"contribution_{record['channel']}"]
    curves = out.tables["mmm_curves"]
    now = {r[0]: r for r in curves.rows if r[1] == 1.0}  # at the current spend: the history's mean per period
    for record in fit["channels"]:
        assert now[record["channel"]][2] == pytest.approx(record["spend"] / len(fit["periods"]))

    advice = budget["advice"]
    split = {row[0]: row for row in out.tables["budget"].rows}
    assert list(split) == list(advice["recommended"])
    for channel, (_, now_spend, recommended, low, high, revenue, marginal) in split.items():
        assert now_spend == pytest.approx(advice["current"][channel], rel=1e-12)
        assert recommended == pytest.approx(advice["recommended"][channel], rel=1e-12)
        assert [low, high] == pytest.approx(advice["bounds"][channel], rel=1e-12)
        assert revenue == pytest.approx(advice["expected"][channel], rel=1e-12)
        assert marginal == pytest.approx(advice["marginal_returns"][channel], rel=1e-12)
    ((goal, total, current, then, change, change_low, change_high, confidence, replicates, unspent),) = out.tables[
        "budget_change"
    ].rows
    assert (goal, total, replicates) == ("revenue", pytest.approx(400.0), advice["replicates"])
    assert [current, then, change] == pytest.approx(
        [advice["current_value"], advice["recommended_value"], advice["change"]], rel=1e-12
    )
    assert [change_low, change_high] == pytest.approx(advice["change_interval"], rel=1e-12)
    assert (confidence, unspent) == (pytest.approx(advice["confidence"]), pytest.approx(advice["unspent"]))
