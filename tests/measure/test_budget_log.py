"""The budget from the log: per-period spend and attributed revenue on a demo world, and the split."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from omniweave.errors import InputError
from omniweave.measure.service.budget import budget_history, recommend_from_log
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from tests.conftest import shared_demo_world


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # the same world as tests/measure/test_mmm_log.py's, built once per run (a copy of its own here)
    return Settings(home=str(shared_demo_world(tmp_path_factory, "budget", customers=300, days=42, seed=3)))


def test_history_is_the_spend_table_and_credited_revenue_per_period(demo: Settings) -> None:
    rt = Runtime(demo)
    try:
        history = budget_history(rt, period_days=7)
        assert len(history.starts) == 6
        assert set(history.spend) == set(history.revenue) and history.spend
        for i, start in enumerate(history.starts):
            day0, day1 = start.date().isoformat(), (start.date().fromordinal(start.date().toordinal() + 6)).isoformat()
            rows = (
                rt.warehouse()
                .sql(
                    f"SELECT lower(channel) AS channel, sum(spend) AS spend FROM spend "
                    f"WHERE date BETWEEN DATE '{day0}' AND DATE '{day1}' GROUP BY 1"
                )
                .to_pylist()
            )
            want = {r["channel"]: r["spend"] for r in rows if r["spend"]}
            got = {c: series[i] for c, series in history.spend.items() if series[i]}
            assert got == pytest.approx(want)
            orders = (
                rt.warehouse()
                .sql(
                    "SELECT sum(CAST(json_extract_string(properties, '$.revenue') AS DOUBLE)) AS revenue FROM events "
                    f"WHERE event = 'Order Completed' AND timestamp >= TIMESTAMPTZ '{start.isoformat()}' "
                    f"AND timestamp < TIMESTAMPTZ '{start.isoformat()}' + INTERVAL 7 DAY"
                )
                .to_pylist()[0]["revenue"]
            )
            credited = sum(series[i] for series in history.revenue.values())
            assert 0 <= credited <= orders + 1e-6  # paid channels get part of the period's orders
    finally:
        rt.close()


def test_the_split_spends_the_total_within_the_limits(demo: Settings) -> None:
    rt = Runtime(demo)
    try:
        history, advice = recommend_from_log(rt, bootstrap=20)
        now = {c: sum(x) / len(x) for c, x in history.spend.items()}
        assert math.fsum(advice.recommended.values()) == pytest.approx(math.fsum(now.values()))
        for channel, spend in advice.recommended.items():
            assert 0.5 * now[channel] - 1e-6 <= spend <= 1.5 * now[channel] + 1e-6
        assert advice.recommended_revenue >= advice.current_revenue - 1e-6
        _, doubled = recommend_from_log(rt, total=1.2 * math.fsum(now.values()), bootstrap=0)
        assert math.fsum(doubled.recommended.values()) == pytest.approx(1.2 * math.fsum(now.values()))
    finally:
        rt.close()


def test_bad_requests_say_what_is_expected(demo: Settings, tmp_path: Path) -> None:
    rt = Runtime(demo)
    try:
        with pytest.raises(InputError, match="whole number of days"):
            budget_history(rt, period_days=0)
        with pytest.raises(InputError, match="expected one of"):
            budget_history(rt, model="magic")
        with pytest.raises(InputError, match="share of current spend"):
            recommend_from_log(rt, max_change=-1)
    finally:
        rt.close()
    empty = Runtime(Settings(home=str(tmp_path / "empty")))
    try:
        with pytest.raises(InputError, match="import ad spend"):
            budget_history(empty)
    finally:
        empty.close()


def test_cli_prints_the_split_as_json_and_rejects_bad_options(demo: Settings) -> None:
    import subprocess
    import sys

    import orjson

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "omniweave", "--home", demo.home, "budget", *args],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    done = run("--basis", "attribution", "--bootstrap", "5", "--format", "json")
    assert done.returncode == 0, done.stderr
    document = orjson.loads(done.stdout)
    assert len(document["periods"]) == 6
    now = sum(sum(x) / len(x) for x in document["spend"].values())
    assert sum(document["recommendation"]["recommended"].values()) == pytest.approx(now)
    bad = run("--basis", "attribution", "--model", "magic")
    assert bad.returncode == 2 and "expected one of" in bad.stderr


@pytest.mark.slow  # eight runs of the command line, two media-mix fits
def test_the_default_basis_is_the_media_mix_model(demo: Settings, tmp_path: Path) -> None:
    """`omniweave budget` fits (and saves) the media-mix model when none is saved, splits the total within the
    bounds and the maximum change, and prints the same split twice; `mmm report` reads the saved fit."""
    import subprocess
    import sys

    import orjson

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "omniweave", "--home", demo.home, *args],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    first = run("budget", "--format", "json")
    assert first.returncode == 0, first.stderr
    advice = orjson.loads(first.stdout)["advice"]
    assert orjson.loads(first.stdout)["fitted_now"] is True
    assert sum(advice["recommended"].values()) == pytest.approx(sum(advice["current"].values()))
    for channel, (low, high) in advice["bounds"].items():
        assert low - 1e-6 <= advice["recommended"][channel] <= high + 1e-6
        assert low == pytest.approx(0.5 * advice["current"][channel])
    again = orjson.loads(run("budget", "--format", "json").stdout)["advice"]
    assert again["recommended"] == advice["recommended"] and again["change_interval"] == advice["change_interval"]
    # a refit in another process reads the same log into the same data (money to the cent, in a fixed order),
    # so the fit and the split are the same to the last digit
    refitted = orjson.loads(run("budget", "--refit", "--format", "json").stdout)["advice"]
    assert refitted["recommended"] == advice["recommended"] and refitted["change"] == advice["change"]
    channel = sorted(advice["recommended"])[0]
    cap = 0.6 * advice["current"][channel]
    bounded = orjson.loads(run("budget", "--bounds", f"{channel}=:{cap}", "--format", "json").stdout)["advice"]
    assert bounded["recommended"][channel] <= cap + 1e-6
    profit = orjson.loads(run("budget", "--goal", "profit", "--margin", "0.5", "--format", "json").stdout)["advice"]
    assert profit["goal"] == "profit" and sum(profit["recommended"].values()) + profit["unspent"] == pytest.approx(
        sum(profit["current"].values())
    )
    bad = run("budget", "--bounds", "tv=lots")
    assert bad.returncode == 2 and "expected channel=min:max" in bad.stderr
    chart = tmp_path / "mmm.html"
    report = run("mmm", "report", "--chart", str(chart))
    assert report.returncode == 0, report.stderr
    assert "ROI" in report.stdout and max(len(line) for line in report.stdout.splitlines()) <= 80
    assert chart.read_text().count("<polyline") >= 2 * len(advice["recommended"])
