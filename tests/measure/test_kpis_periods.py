"""KPIs on whole and partial periods, what counts as a customer's activity, totals that equal their breakdowns."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from omniweave.events import spec
from omniweave.measure.kpis import period_length, whole_periods
from omniweave.measure.service.kpis import kpi_table
from omniweave.storage.eventlog import events_to_table
from tests.segment_events import segment_event

FEB, MAR, APR = date(2026, 2, 1), date(2026, 3, 1), date(2026, 4, 1)
TODAY = date(2026, 4, 15)


def _world(platform_noise: bool) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []

    def add(at: datetime, name: str, user: str, kind: str = "track", **properties: Any) -> None:
        track = kind == "track"
        events.append(
            segment_event(
                len(events),
                at.isoformat().replace("+00:00", "Z"),
                received_at=datetime(2026, 4, 2, tzinfo=UTC),
                type=kind,
                event=name if track else None,
                name=None if track else name,
                user=user,
                **properties,
            )
        )

    # a browser on every day of February and March: both months are whole; April has one day of data
    day = datetime(2026, 2, 1, 9, tzinfo=UTC)
    while day.date() <= date(2026, 3, 31):
        add(day, "Home", "u9", kind="page")
        day += timedelta(days=1)
    for at, user, revenue, channel in (
        ("2026-02-02", "u1", 100.0, "web"),
        ("2026-02-10", "u1", 50.0, "web"),  # u1 buys on two days of February: a repeat
        ("2026-02-05", "u2", 30.0, "store"),
        ("2026-03-03", "u1", 70.0, "store"),  # of u1 and u2 (February's customers) only u1 comes back
        ("2026-03-04", "u3", 20.0, "web"),
        ("2026-04-01", "u2", 10.0, "web"),
    ):
        add(
            datetime.fromisoformat(at + "T12:00:00+00:00"),
            spec.ORDER_COMPLETED,
            user,
            channel=channel,
            revenue=revenue,
            store_id="S1" if channel == "store" else None,
        )
    # e-mail sign-ups: u4 online in February, then again at the till in March (not a second sign-up); u5 at the
    # till in March
    add(datetime(2026, 2, 6, tzinfo=UTC), "identify", "u4", kind="identify")
    events[-1]["traits"] = {"email_opt_in": True}
    add(datetime(2026, 3, 6, tzinfo=UTC), spec.LOYALTY_SIGNED_UP, "u4", channel="store", store_id="S1")
    events[-1]["traits"] = {"email_opt_in": True}
    add(datetime(2026, 3, 7, tzinfo=UTC), spec.LOYALTY_SIGNED_UP, "u5", channel="store", store_id="S2")
    events[-1]["traits"] = {"email_opt_in": True}
    if platform_noise:
        # what omniweave writes about people: 40 segment changes, sends and deliveries in March
        for i in range(40):
            at = datetime(2026, 3, 20, tzinfo=UTC)
            add(at, spec.SEGMENT_ENTERED, f"n{i}", channel=spec.PLATFORM_CHANNEL, segment_id="s")
            add(at, spec.EMAIL_DELIVERED, f"n{i}", channel="email")
            add(at, "SMS Sent", f"n{i}", channel="sms")
    return events


@pytest.fixture(params=[False, True], ids=["log", "log+platform-events"])
def seeded(runtime, request):
    runtime.log.append("events", events_to_table(_world(request.param), "test"), "world")
    return runtime


def _table(runtime, **options: Any) -> dict[tuple[date, str, str], tuple[float, bool]]:
    table = kpi_table(runtime, today=TODAY, **options)
    return {(r["period"], r["kpi"], r["dimension_value"]): (r["value"], r["partial"]) for r in table.to_pylist()}


def test_whole_periods_compare_as_they_are_and_partial_ones_are_marked(seeded):
    got = _table(seeded)
    assert got[(MAR, "revenue_growth", "all")] == (pytest.approx((90 - 180) / 180 * 100), False)
    assert got[(MAR, "retention_rate", "all")] == (50.0, False)
    assert got[(FEB, "repeat_purchase_rate", "all")] == (50.0, False)
    assert got[(MAR, "repeat_purchase_rate", "all")] == (0.0, False)
    # April holds one day of data: growth per day of data, marked partial; no retention or repeat rate
    assert got[(APR, "revenue_growth", "all")] == (pytest.approx((10 / 1 / (90 / 31) - 1) * 100), True)
    assert got[(APR, "revenue_total", "all")] == (10.0, True)
    assert (APR, "retention_rate", "all") not in got and (APR, "repeat_purchase_rate", "all") not in got
    assert not any(partial for (p, _, _), (_, partial) in got.items() if p in (FEB, MAR))


def test_the_current_period_is_partial(seeded):
    table = kpi_table(seeded, today=date(2026, 3, 31), kpis=["revenue_total", "retention_rate"])
    rows = {(r["period"], r["kpi"]): r["partial"] for r in table.to_pylist()}
    assert rows == {(FEB, "revenue_total"): False, (MAR, "revenue_total"): True, (APR, "revenue_total"): True}


def test_platform_events_are_not_customer_activity(seeded):
    got = _table(seeded, kpis=["conversion_rate"])
    # March: u9, u1, u3 active (and u4, u5 signing up at the till); the 40 people omniweave only wrote about
    # are not
    assert got[(MAR, "conversion_rate", "all")] == (pytest.approx(2 / 5 * 100), False)


def test_email_signups_total_equals_the_sum_of_each_breakdown(seeded):
    total = _table(seeded, kpis=["email_signups"])
    assert {k: v for k, (v, _) in total.items()} == {(FEB, "email_signups", "all"): 1, (MAR, "email_signups", "all"): 1}
    for by in ("channel", "store"):
        parts = _table(seeded, kpis=["email_signups"], by=by)
        for month in (FEB, MAR):
            summed = sum(v for (p, _, _), (v, _) in parts.items() if p == month)
            assert summed == total[(month, "email_signups", "all")][0] or (by == "store" and month == FEB), by
    assert _table(seeded, kpis=["email_signups"], by="store") == {(MAR, "email_signups", "S2"): (1.0, False)}


def test_period_arithmetic():
    assert period_length(2026 * 12 + 1, "month") == 28 and period_length(5, "week") == 7
    assert whole_periods({2026 * 12 + 1: 28, 2026 * 12 + 2: 30}, "month", date(2026, 5, 1)) == {2026 * 12 + 1}
    assert whole_periods({2026 * 12 + 1: 28}, "month", date(2026, 2, 28)) == frozenset()
