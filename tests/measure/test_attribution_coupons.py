"""A coupon is a mechanism, not a channel (issue 22 §5): a coupon used at the till or in a shop credits the
channel (and campaign) that issued it, one that `coupons redeem` turned into a `Coupon Redeemed` counts
once, a coupon whose issuer nobody knows touches no channel; campaign rows come sorted and no number
is shown as -0.00."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from omniweave.events import spec
from omniweave.measure.service.attribution import AttributionRequest, attribution_report, clean
from omniweave.measure.service.paths import journeys_from_log
from omniweave.profiles.service.build import write_identities
from omniweave.shells.cli.measure import amount, attribution_views
from omniweave.shells.render import Grid
from omniweave.storage.eventlog import events_to_table
from tests.segment_events import segment_event

IDENTITIES = [("user_id", f"u{i}", f"P{i}") for i in range(1, 7)]
SPRING = {"name": "Spring Sale", "source": "sms", "medium": "coupon"}


def _event(n: int, at: str, event: str, user: str, *, utm: dict[str, str] | None = None, **fields: Any):
    return segment_event(
        n,
        at,
        received_at=datetime(2026, 7, 1, tzinfo=UTC),
        event=event,
        user=user,
        context={"campaign": utm} if utm else None,
        **fields,
    )


def order(n: int, at: str, user: str, revenue: float) -> dict[str, Any]:
    return _event(n, at, spec.ORDER_COMPLETED, user, channel="store", revenue=revenue, order_id=f"o{n}")


def world() -> list[dict[str, Any]]:
    return [
        # P1: an SMS coupon used at the till (the coupons importer's Coupon Applied), then the receipt
        _event(
            10,
            "2026-06-05T11:59:00Z",
            spec.COUPON_APPLIED,
            "u1",
            utm=SPRING,
            channel="coupon",
            coupon_id="SMS1",
            issued_channel="sms",
            campaign="Spring Sale",
        ),
        order(11, "2026-06-05T12:00:00Z", "u1", 40.0),
        # P2: a coupon nobody knows the issuer of, after an e-mail click: only the e-mail is a touch
        _event(20, "2026-06-06T09:00:00Z", spec.EMAIL_LINK_CLICKED, "u2", campaign_name="June News"),
        _event(21, "2026-06-06T11:59:00Z", spec.COUPON_APPLIED, "u2", channel="coupon", coupon_id="PAPER9"),
        order(22, "2026-06-06T12:00:00Z", "u2", 30.0),
        # P3: an e-mailed code applied at the till, and the Coupon Redeemed that `coupons redeem` made of it
        _event(
            30,
            "2026-06-07T11:59:00Z",
            spec.COUPON_APPLIED,
            "u3",
            channel="coupon",
            coupon_id="MAIL3",
            issued_channel="email",
            campaign="Welcome",
        ),
        _event(
            31,
            "2026-06-07T11:58:59.999Z",
            spec.COUPON_REDEEMED,
            "u3",
            utm={"name": "Welcome", "medium": "email"},
            channel="email",
            coupon_id="MAIL3",
            campaign="Welcome",
            redemption_event="m030",
        ),
        order(32, "2026-06-07T12:00:00Z", "u3", 20.0),
        # P4: a leaflet code (issued in bulk, no channel) of the campaign "Leaflet", redeemed
        _event(
            40,
            "2026-06-08T11:59:00Z",
            spec.COUPON_REDEEMED,
            "u4",
            utm={"name": "Leaflet", "medium": "coupon"},
            channel="coupon",
            coupon_id="LEAF4",
            campaign="Leaflet",
            redemption_event="o41",
        ),
        order(41, "2026-06-08T12:00:00Z", "u4", 10.0),
        # P5: an ad click of the campaign "after" that never converts
        _event(50, "2026-06-09T10:00:00Z", spec.AD_CLICKED, "u5", channel="social", campaign_name="after"),
    ]


@pytest.fixture
def seeded(runtime):
    runtime.log.append("events", events_to_table(world(), "test"), "world")
    write_identities(runtime, IDENTITIES)
    return runtime


def paths_of(runtime, **options: Any) -> dict[str, tuple[float, float, float]]:
    paths = journeys_from_log(runtime, **options).paths
    return {" > ".join(row.channels): (row.conversions, row.value, row.nulls) for row in paths.rows}


@pytest.mark.parametrize("dedup_minutes", [30.0, 0.0])
def test_a_coupon_credits_the_channel_that_issued_it_and_is_no_channel_itself(seeded, dedup_minutes):
    paths = paths_of(seeded, dedup_minutes=dedup_minutes)
    # P3's Coupon Applied and its Coupon Redeemed are one touch even without de-duplication
    assert paths == {
        "sms": (1.0, 40.0, 0.0),
        "email": (2.0, 50.0, 0.0),
        "social": (0.0, 0.0, 1.0),
    }, paths
    # P4's leaflet code has no channel: its order has no touch
    assert journeys_from_log(seeded).untouched_conversions == 1.0


def test_by_campaign_the_coupon_credits_its_campaign_and_rows_are_sorted(seeded):
    paths = paths_of(seeded, by="campaign", dedup_minutes=0.0)
    assert paths == {
        "Spring Sale": (1.0, 40.0, 0.0),
        "June News": (1.0, 30.0, 0.0),
        "Welcome": (1.0, 20.0, 0.0),
        "Leaflet": (1.0, 10.0, 0.0),
        "after": (0.0, 0.0, 1.0),
    }, paths
    report = attribution_report(seeded, AttributionRequest(models=("last_touch", "markov"), by="campaign"))
    assert report.labels == ("after", "June News", "Leaflet", "Spring Sale", "Welcome")
    assert [record["channel"] for record in report.records()][:5] == list(report.labels)
    assert "coupon" not in str(report.to_dict())


def test_no_minus_zero_anywhere(seeded):
    report = attribution_report(seeded, AttributionRequest())
    for record in report.records():
        for key in ("conversions", "value", "roas", "roi"):
            if key in record:
                assert str(record[key]) != "-0.0", record
    for view in attribution_views(report):
        cells = [cell for row in view.rows for cell in row] if isinstance(view, Grid) else [view]
        assert not any("-0.00" in str(cell) for cell in cells)
    assert amount(-1e-13) == "0.00" and amount(-0.004) == "0.00" and amount(-0.006) == "-0.01"
    assert str(clean(-1e-15)) == "0.0" and str(clean(-0.0)) == "0.0" and clean(-2.5) == -2.5
