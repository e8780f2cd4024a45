"""`coupons redeem` with `since` (the demo's daily run after an import of the day's receipts): only the redemptions
at or after it are read, and a run over the whole log afterwards finds what was left, so the two runs together do
what one run over the whole log does."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from omniweave.activate.service import coupons as service
from omniweave.collect.loader import load_all
from omniweave.collect.service import import_file
from omniweave.identity.service.resolve import resolve
from omniweave.runtime import Runtime
from tests.activate.test_coupons import identify, till_file


def test_redeem_since_reads_the_redemptions_from_then_on(runtime: Runtime, tmp_path: Path) -> None:
    people = identify(runtime, ("C-100", "ann@example.com"), ("C-200", "bob@example.com"))
    service.create_pool(runtime, "spring", length=10)
    early = service.issue(runtime, "spring", person_id=people["C-100"], send_key="k-ann", channel="email")
    late = service.issue(runtime, "spring", person_id=people["C-200"], send_key="k-bob", channel="sms")
    till = till_file(
        tmp_path / "till.csv",
        [
            {"timestamp": "2026-05-10T12:00:00Z", "coupon_code": early.code, "customer_number": "C-100"},
            {"timestamp": "2026-05-12T09:30:00Z", "coupon_code": late.code, "customer_number": "C-200"},
        ],
    )
    import_file(runtime, "till", till)
    load_all(runtime.store, runtime.log)
    resolve(runtime, probabilistic=False)

    done = service.redeem_from_log(runtime, since=datetime(2026, 5, 12, 9, 30, tzinfo=UTC))  # at the late one
    assert (done.events, done.redeemed, done.emitted) == (1, 1, 1)
    found_early, found_late = service.find(runtime, early.code), service.find(runtime, late.code)
    assert found_early is not None and found_early.redeemed_at is None
    assert found_late is not None and found_late.redeemed_by == people["C-200"]
    assert service.redeem_from_log(runtime, since=datetime(2026, 5, 13, tzinfo=UTC)).events == 0  # nothing after

    rest = service.redeem_from_log(runtime)  # the whole log: the early one, and the late one already redeemed
    assert (rest.events, rest.redeemed, rest.emitted) == (2, 1, 1)
    found_early = service.find(runtime, early.code)
    assert found_early is not None and found_early.redeemed_by == people["C-100"]
