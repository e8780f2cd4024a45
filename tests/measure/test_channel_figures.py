"""Reach and engagement per channel (`channel_reach`) on a hand-made world whose every figure is worked out by hand
below, and the media-mix response curves (`response_curves`) against the Hill formula written out again."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pytest

from omniweave.errors import InputError
from omniweave.events import spec
from omniweave.measure.service.channel_figures import channel_reach, response_curves
from omniweave.measure.service.mmm import SavedFit
from omniweave.profiles.service.build import write_identities
from omniweave.storage.eventlog import SPEND_SCHEMA, events_to_table
from tests.segment_events import segment_event


def world() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []

    def add(at: str, kind: str, name: str | None, channel: str, user: str | None = None, anon: str | None = None,
            **properties: Any) -> None:  # fmt: skip
        track = kind == "track"
        events.append(
            segment_event(
                len(events),
                at + "Z",
                received_at=datetime(2026, 4, 1, tzinfo=UTC),
                type=kind,
                event=name if track else None,
                name=None if track else name,
                user=user,
                anon=anon,
                channel=channel,
                **properties,
            )
        )

    # February. P1 (u1, and browser a1) gets an e-mail and opens it, and browses the web site anonymously.
    add("2026-02-02T09:00:00", "track", spec.EMAIL_DELIVERED, "email", user="u1")
    add("2026-02-02T10:00:00", "track", spec.EMAIL_OPENED, "email", user="u1")
    add("2026-02-02T10:05:00", "page", "Home", "web", anon="a1")
    # P2 gets the e-mail and does nothing with it (reached, not engaged); the e-mail to P3 bounces (not reached)
    add("2026-02-02T09:00:00", "track", spec.EMAIL_DELIVERED, "email", user="u2")
    add("2026-02-02T09:00:00", "track", spec.EMAIL_BOUNCED, "email", user="u3")
    # a sent e-mail is not a delivered one: P4 is not reached by e-mail
    add("2026-02-02T09:00:00", "track", spec.EMAIL_SENT, "email", user="u4")
    # P3 sees a social ad (reached, not engaged); in March P3 clicks one (reached and engaged then)
    add("2026-02-03T12:00:00", "track", spec.AD_IMPRESSION, "social", user="u3")
    add("2026-03-03T12:00:00", "track", spec.AD_CLICKED, "social", user="u3")
    # P4 visits a store twice (one person); an anonymous footfall count (offline:...) is nobody
    add("2026-02-04T12:00:00", "track", spec.STORE_VISITED, "store", user="u4", store_id="S1")
    add("2026-02-05T12:00:00", "track", spec.STORE_VISITED, "store", user="u4", store_id="S1")
    add("2026-02-05T12:00:00", "track", spec.STORE_VISITED, "store", anon="offline:store:S1:1", store_id="S1")
    # someone nobody resolved browses: counted by their user id
    add("2026-02-06T12:00:00", "page", "Home", "web", user="u9")
    # bookkeeping and statements reach no one: a segment change, a CRM identify
    add("2026-02-06T12:00:00", "track", spec.SEGMENT_ENTERED, spec.PLATFORM_CHANNEL, user="u1")
    add("2026-02-06T12:00:00", "identify", None, "crm", user="u2")
    # March. P4 uses at the till a coupon that SMS issued: the SMS channel's, as the KPI breakdown counts it
    add("2026-03-04T12:00:00", "track", spec.COUPON_APPLIED, "store", user="u4", issued_channel="sms", coupon="X1")
    return events


def spend_table() -> pa.Table:
    rows = [
        ("s1", date(2026, 2, 10), "social", "facebook", "spring", 1000, 10, 30.0),
        ("s2", date(2026, 2, 11), "search", "google", "brand", 500, 20, 10.0),
        ("s3", date(2026, 3, 5), "social", "instagram", "spring", 2000, 5, 50.0),
    ]
    cols = list(zip(*rows, strict=True))
    return pa.table(
        {
            "spend_id": cols[0],
            "source": ["test"] * 3,
            "date": cols[1],
            "channel": cols[2],
            "platform": cols[3],
            "campaign": cols[4],
            "impressions": cols[5],
            "clicks": cols[6],
            "spend": cols[7],
            "currency": ["GBP"] * 3,
        },
        schema=SPEND_SCHEMA,
    )


@pytest.fixture
def seeded(runtime):  # type: ignore[no-untyped-def]
    runtime.log.append("events", events_to_table(world(), "test"), "world")
    runtime.log.append("spend", spend_table(), "spend", date_column="date")
    write_identities(
        runtime,
        [
            ("user_id", "u1", "P1"),
            ("anonymous_id", "a1", "P1"),
            ("user_id", "u2", "P2"),
            ("user_id", "u3", "P3"),
            ("user_id", "u4", "P4"),
        ],
    )
    return runtime


def test_reach_and_engagement_per_channel_and_month(seeded) -> None:  # type: ignore[no-untyped-def]
    rows = {(r["period"], r["channel"]): r for r in channel_reach(seeded, period="month").rows}
    expected = {
        # period, channel: reached, engaged, engagement rate, impressions, clicks
        ("2026-02-01", "email"): (2, 1, 50.0, None, None),
        ("2026-02-01", "web"): (2, 2, 100.0, None, None),
        ("2026-02-01", "social"): (1, 0, 0.0, 1000.0, 10.0),
        ("2026-02-01", "search"): (0, 0, None, 500.0, 20.0),
        ("2026-02-01", "store"): (1, 1, 100.0, None, None),
        ("2026-03-01", "social"): (1, 1, 100.0, 2000.0, 5.0),
        ("2026-03-01", "sms"): (1, 1, 100.0, None, None),
    }
    assert set(rows) == set(expected)
    for key, (reached, engaged, rate, impressions, clicks) in expected.items():
        row = rows[key]
        assert (row["reached"], row["engaged"], row["impressions"], row["clicks"]) == (
            reached,
            engaged,
            impressions,
            clicks,
        ), key
        assert row["engagement_rate"] == (None if rate is None else pytest.approx(rate)), key


def test_reach_per_week_and_a_range_of_periods(seeded) -> None:  # type: ignore[no-untyped-def]
    weeks = channel_reach(seeded, period="week", since=date(2026, 2, 2), until=date(2026, 2, 8)).rows
    assert {r["period"] for r in weeks} == {"2026-02-02"}  # the Monday-first week of 2 to 8 February
    store = next(r for r in weeks if r["channel"] == "store")
    assert (store["reached"], store["engaged"]) == (1, 1)  # two visits, one person
    with pytest.raises(InputError) as bad:
        channel_reach(seeded, period="fortnight")
    assert bad.value.field == "period"


def _fit() -> SavedFit:
    def curve(beta: float, k: float, s: float, shares: list[float], mix: list[float]) -> dict[str, Any]:
        return {"beta": beta, "decay": 0.5, "half_saturation": k, "shape": s, "peak": 0, "delayed": False,
                "max_lag": 8, "shares": shares, "mix": mix}  # fmt: skip

    return SavedFit(
        {
            "periods": ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"],
            "channels": [{"channel": "tv", "spend": 400.0}, {"channel": "radio", "spend": 100.0}],
            "curves": {
                "tv": curve(5000.0, 150.0, 1.5, [1.0], [1.0]),
                "radio": curve(800.0, 20.0, 1.0, [0.25, 0.75], [0.5, 0.5]),  # two regions, spent half and half
            },
            "replicates": [],
        }
    )


def test_response_curves_follow_the_hill_formula() -> None:
    points = response_curves(_fit(), points=7, up_to=3.0)
    assert [p["channel"] for p in points] == ["tv"] * 7 + ["radio"] * 7
    now = {"tv": 100.0, "radio": 25.0}  # the fitted history's spend / its 4 periods
    for p in points:
        x = p["times_current"] * now[p["channel"]]
        assert p["spend"] == pytest.approx(x)
        if p["channel"] == "tv":  # beta * x^s / (x^s + K^s)
            want = 5000.0 * x**1.5 / (x**1.5 + 150.0**1.5)
        else:  # beta * sum over regions of share * hill(x * mix / share)
            a1, a2 = x * 0.5 / 0.25, x * 0.5 / 0.75
            want = 800.0 * (0.25 * a1 / (a1 + 20.0) + 0.75 * a2 / (a2 + 20.0))
        assert p["revenue"] == pytest.approx(want, rel=1e-12, abs=1e-9)
    assert [p["times_current"] for p in points[:7]] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    fine = [p for p in response_curves(_fit(), points=601) if p["spend"] > 0]
    for before, after in zip(fine, fine[1:], strict=False):  # the marginal return is the curve's slope
        if before["channel"] == after["channel"] and before["times_current"] >= 0.1:  # near 0, x^0.5 is steep
            slope = (after["revenue"] - before["revenue"]) / (after["spend"] - before["spend"])
            assert slope == pytest.approx((before["marginal_return"] + after["marginal_return"]) / 2, rel=1e-3)
    with pytest.raises(InputError) as bad:
        response_curves(_fit(), points=1)
    assert bad.value.field == "points"
