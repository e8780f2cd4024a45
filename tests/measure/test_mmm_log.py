"""The media-mix model from the log (measure/service/mmm.py): the data it reads, per day and per store region,
the lift tests it is calibrated by, and the `omniweave mmm fit` door, on a small demo world."""

from __future__ import annotations

import subprocess
from datetime import date, timedelta
from pathlib import Path

import orjson
import pytest

from omniweave.collect.service import import_file
from omniweave.errors import InputError
from omniweave.measure.service.mmm import MmmRequest, fit_from_log, media_data, saved_fit
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from tests.conftest import omniweave_cmd, shared_demo_world


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_demo_world(tmp_path_factory, "mmm-log", customers=300, days=42, seed=3)


def test_revenue_and_spend_per_day_and_per_region_are_the_logs(home: Path) -> None:
    rt = Runtime(Settings(home=str(home)))
    try:
        data, first, left_out = media_data(rt, MmmRequest())
        days = len(data.periods)
        assert data.units == ("all",) and days >= 28 and data.periods[0] == first.isoformat()
        day0 = (first - date(1970, 1, 1)).days
        wh = rt.warehouse()
        per_day = {
            r["day"]: r["revenue"]
            for r in wh.sql(
                "SELECT CAST(floor(epoch(timestamp) / 86400) AS BIGINT) AS day, sum(coalesce("
                "CAST(json_extract_string(properties, '$.revenue') AS DOUBLE), "
                "CAST(json_extract_string(properties, '$.total') AS DOUBLE))) AS revenue "
                "FROM events WHERE event = 'Order Completed' GROUP BY 1"
            ).to_pylist()
        }
        for t in range(days):
            assert data.revenue[0, t] == pytest.approx(per_day.get(day0 + t, 0.0), abs=0.01 * 50), t
        last = (first + timedelta(days=days - 1)).isoformat()
        spent = {
            r["channel"]: r["spend"]
            for r in wh.sql(
                "SELECT lower(channel) AS channel, sum(spend) AS spend FROM spend "
                f"WHERE date BETWEEN DATE '{first.isoformat()}' AND DATE '{last}' GROUP BY 1"
            ).to_pylist()
        }
        assert set(data.spend) | set(left_out) == {c for c, x in spent.items() if x}
        for c, x in data.spend.items():
            assert float(x.sum()) == pytest.approx(spent[c], abs=0.01 * days), c
        assert {"tv", "radio", "print", "outdoor", "door_drops"} <= set(data.spend)  # the demo's media

        regional, _, _ = media_data(rt, MmmRequest(by="region"))
        cities = {r["city"] for r in wh.sql("SELECT city FROM stores").to_pylist()}
        assert set(regional.units) == cities and len(cities) > 1
        store, _, _ = media_data(rt, MmmRequest(revenue="store"))
        assert regional.revenue.sum(axis=0) == pytest.approx(store.revenue[0], abs=0.05)
        # outdoor is bought per city (campaign outdoor_posters@<city>): its spend stays in that city
        for u, city in enumerate(regional.units):
            posted = wh.sql(
                f"SELECT coalesce(sum(spend), 0) AS s FROM spend WHERE campaign = 'outdoor_posters@{city}' "
                f"AND date BETWEEN DATE '{first.isoformat()}' AND DATE '{last}'"
            ).to_pylist()[0]["s"]
            assert float(regional.spend["outdoor"][u].sum()) == pytest.approx(posted, abs=0.01 * days), city
        # a national channel is split over the regions by their share of revenue
        shares = regional.revenue.sum(axis=1) / regional.revenue.sum()
        assert regional.spend["tv"].sum(axis=1) / regional.spend["tv"].sum() == pytest.approx(shares)
        with pytest.raises(InputError, match="whole weeks with both spend and orders; expected at least 28"):
            media_data(rt, MmmRequest(granularity="week"))
        with pytest.raises(InputError, match="expected one of day, week"):
            media_data(rt, MmmRequest(granularity="month"))
    finally:
        rt.close()


def test_lift_tests_in_the_log_calibrate_the_fit(home: Path, tmp_path: Path) -> None:
    """`omniweave import lift_tests FILE`: a test inside the fitted days pulls the channel's contribution over
    those days towards its measurement; one outside them, or of a channel not in the fit, is listed, unused."""
    rt = Runtime(Settings(home=str(home)))
    try:
        plain = fit_from_log(rt, MmmRequest(bootstrap=0), save=False)
        assert plain.lift_tests == ()
        first = plain.first_day
        start, end = first + timedelta(days=10), first + timedelta(days=23)
        over = slice(10, 24)
        before = float(plain.fit.contributions["tv"][over].sum())
        measured = 2 * before + 5000.0
        rows = [
            "test_id,channel,start_date,end_date,incremental_revenue,standard_error",
            f"geo-1,TV,{start},{end},{measured:.2f},10",
            f"geo-2,tv,{first - timedelta(days=30)},{first - timedelta(days=5)},1000,10",
            f"geo-3,cinema,{start},{end},1000,10",
        ]
        csv = tmp_path / "lift_tests.csv"
        csv.write_text("\n".join(rows) + "\n")
        summary = import_file(rt, "lift_tests", csv)
        assert (summary.rows_imported, summary.rows_rejected) == (3, 0), summary.errors
        calibrated = fit_from_log(rt, MmmRequest(bootstrap=0))
        after = float(calibrated.fit.contributions["tv"][over].sum())
        assert abs(after - measured) < abs(before - measured)
        assert after == pytest.approx(measured, rel=0.1)
        listed = {t["test_id"]: t for t in calibrated.lift_tests}
        assert listed["geo-1"]["used"] and listed["geo-1"]["channel"] == "tv"
        assert not listed["geo-2"]["used"] and "not all inside the fitted periods" in listed["geo-2"]["reason"]
        assert not listed["geo-3"]["used"] and "no channel 'cinema'" in listed["geo-3"]["reason"]
        # the saved fit says which tests calibrated it; a fit may leave them out
        saved = saved_fit(rt)
        assert saved is not None
        assert {t["test_id"]: t["used"] for t in saved.document["lift_tests"]} == {
            "geo-1": True,
            "geo-2": False,
            "geo-3": False,
        }
        off = fit_from_log(rt, MmmRequest(bootstrap=0, lift_tests=False), save=False)
        assert off.lift_tests == () and float(off.fit.contributions["tv"][over].sum()) == pytest.approx(before)
    finally:
        rt.close()


def test_mmm_fit_per_region_prints_json_and_saves_the_datasets(home: Path) -> None:
    done = subprocess.run(
        omniweave_cmd(
            "--home",
            str(home),
            "mmm",
            "fit",
            "--by",
            "region",
            "--bootstrap",
            "5",
            "--no-lift-tests",
            "--format",
            "json",
        ),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    document = orjson.loads(done.stdout)
    assert document["request"]["by"] == "region" and len(document["units"]) > 1 and document["lift_tests"] == []
    assert {r["channel"] for r in document["channels"]} >= {"tv", "outdoor"}
    for r in document["channels"]:
        assert r["contribution_low"] <= r["contribution"] <= r["contribution_high"] + 1e-6
    rt = Runtime(Settings(home=str(home)))
    try:
        wh = rt.warehouse()
        assert wh.table("mmm_channels").count().to_pyarrow().as_py() == len(document["channels"])
        assert wh.table("mmm_series").count().to_pyarrow().as_py() == len(document["periods"])
    finally:
        rt.close()
    bad = subprocess.run(
        omniweave_cmd("--home", str(home), "mmm", "fit", "--by", "country"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert bad.returncode == 2 and "expected region" in bad.stderr


def test_promotions_in_the_log_are_the_baselines_indicators(home: Path, tmp_path: Path) -> None:
    """`omniweave import promotions FILE`: each promotion becomes a [period] indicator of the days it ran
    (its runs together), one that never runs inside the fitted days gives no column; a bad row is rejected
    with its field and nothing is imported."""
    from omniweave.collect.files import builtin_kinds

    assert "promotions" in builtin_kinds()
    rt = Runtime(Settings(home=str(home)))
    try:
        data, first, _ = media_data(rt, MmmRequest())
        assert data.promotions is not None and data.promotions.shape == (len(data.periods), 0)
        bad = tmp_path / "bad.csv"
        bad.write_text("promotion,start_date,end_date\nspring,not a date,2026-01-01\n")
        rejected = import_file(rt, "promotions", bad)
        assert rejected.rows_imported == 0 and "start_date" in str(rejected.errors)
        day = lambda k: (first + timedelta(days=k)).isoformat()  # noqa: E731
        csv = tmp_path / "promotions.csv"
        csv.write_text(
            "promotion,start_date,end_date,description\n"
            f"summer_sale,{day(3)},{day(6)},20% off\n"
            f"summer_sale,{day(20)},{day(20)},one more day\n"
            f"price_cut,{day(10)},{day(400)},\n"
            f"old_sale,{day(-40)},{day(-30)},before the fitted days\n"
        )
        summary = import_file(rt, "promotions", csv)
        assert (summary.rows_imported, summary.rows_rejected) == (4, 0), summary.errors
        data, _, _ = media_data(rt, MmmRequest())
        days = len(data.periods)
        price_cut = [1.0 if k >= 10 else 0.0 for k in range(days)]
        summer = [1.0 if 3 <= k <= 6 or k == 20 else 0.0 for k in range(days)]
        assert data.promotions is not None and data.promotions.shape == (days, 2)
        assert data.promotions[:, 0].tolist() == price_cut  # columns by name: price_cut, summer_sale
        assert data.promotions[:, 1].tolist() == summer
        fitted = fit_from_log(rt, MmmRequest(bootstrap=0), save=False)
        assert set(fitted.fit.contributions) == set(data.spend)
    finally:
        rt.close()
