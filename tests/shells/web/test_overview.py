"""The Overview page against `omniweave kpis` on the same demo world: the same numbers for the same period."""

from __future__ import annotations

import csv
import io
import json
import subprocess

import pytest

from tests.conftest import omniweave_cmd
from tests.shells.web.conftest import Dashboard


def _cli_kpis(dashboard: Dashboard, period: str) -> list[dict[str, object]]:
    out = subprocess.run(
        omniweave_cmd("--home", str(dashboard.home), "kpis", "--period", period, "--format", "json"),
        check=True,
        capture_output=True,
        text=True,
    )
    return [r for r in json.loads(out.stdout) if r["dimension"] == "all"]


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_overview_needs_a_session(dashboard: Dashboard) -> None:
    answer = dashboard.client(None).get("/app/overview?period=week")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/app/login?next=%2Fapp%2Foverview%3Fperiod%3Dweek"


def test_overview_shows_the_cli_numbers_for_each_period(dashboard: Dashboard) -> None:
    client = dashboard.client("analyst")
    for period in ("month", "week"):
        cli = _cli_kpis(dashboard, period)
        periods = sorted({r["period"] for r in cli})
        chosen, previous = periods[-2], periods[-3]  # not the latest: the page is asked for it
        page = client.get(f"/app/overview?period={period}&at={chosen}")
        assert page.status_code == 200, page.text
        assert f'<strong id="chosen-period">{chosen}</strong>' in page.text
        rows = _csv(client.get(f"/app/overview?period={period}&at={chosen}&csv=kpis").text)
        expected = {r["kpi"]: r for r in cli if r["period"] == chosen}
        before = {r["kpi"]: r for r in cli if r["period"] == previous}
        assert {r["kpi"] for r in rows} == set(expected)
        for row in rows:
            want = expected[row["kpi"]]
            assert float(row["value"]) == pytest.approx(want["value"], rel=1e-9), row  # parallel sums: last bit
            assert row["group"] == want["group"] and row["unit"] == want["unit"] and row["scope"] == want["scope"]
            assert row["partial"] == str(bool(want["partial"]))
            old = before.get(row["kpi"])
            if old is None:
                assert row["previous"] == "" and row["change %"] == ""
            else:
                assert float(row["previous"]) == pytest.approx(old["value"], rel=1e-9)
                if old["value"]:
                    assert float(row["change %"]) == pytest.approx(
                        round((want["value"] - old["value"]) / abs(old["value"]) * 100, 2), abs=0.011
                    )
        # every group of the catalogue has its section, and the revenue split is the CLI's
        for group in ("awareness", "engagement", "conversion", "loyalty"):
            assert f'id="g-{group}"' in page.text
        split = {
            r["period"]: r
            for r in _csv(client.get(f"/app/overview?period={period}&at={chosen}&csv=revenue_split").text)
        }
        online = {r["period"]: r["value"] for r in cli if r["kpi"] == "revenue_online"}
        if chosen in online:
            assert float(split[chosen]["online"]) == pytest.approx(online[chosen], rel=1e-9)


def test_overview_refuses_a_bad_period_naming_the_field(dashboard: Dashboard) -> None:
    client = dashboard.client("marketer")
    bad = client.get("/app/overview?period=fortnight")
    assert bad.status_code == 400
    assert "period must be one of day, week, month" in bad.text and "<code>period</code>" in bad.text
    early = client.get("/app/overview?period=month&at=1999-01-01")
    assert early.status_code == 400 and "<code>at</code>" in early.text
    missing = client.get("/app/overview?csv=nothing")
    assert missing.status_code == 404 and "no table &#39;nothing&#39;" in missing.text
