"""`coupons_of`: the coupons issued to a person or redeemed by them (the dashboard's customer page), against a
filter of every coupon row of the store."""

from __future__ import annotations

import sqlalchemy as sa

from omniweave.activate.service import coupons as service
from omniweave.runtime import Runtime
from omniweave.storage.ops.tables.reach import coupons


def test_the_coupons_issued_to_or_redeemed_by_a_person(runtime: Runtime) -> None:
    service.create_pool(runtime, "spring", length=8, campaign="Spring")
    issued = {
        key: service.issue(runtime, "spring", person_id=person, send_key=key, channel="email")
        for key, person in (("k1", "P1"), ("k2", "P1"), ("k3", "P2"), ("k4", "P3"))
    }
    with runtime.store.engine.begin() as conn:  # P2's code used by P1 at a till, P3's by P3 online
        for key, by, via, at in (("k3", "P1", "store", 2e9), ("k4", "P3", "web", 2.1e9)):
            conn.execute(
                coupons.update()
                .where(coupons.c.code == issued[key].code)
                .values(redeemed_at=at, redeemed_by=by, redeemed_via=via, shared=by != "P2" and key == "k3")
            )
        every = [dict(row) for row in conn.execute(sa.select(coupons)).mappings()]
    for ids in (["P1"], ["P2"], ["P3"], ["P1", "P3"], ["nobody"], []):
        found = service.coupons_of(runtime, ids)
        expected = {r["code"] for r in every if r["person_id"] in ids or r["redeemed_by"] in ids}
        assert {c.code for c in found} == expected, ids
        assert [c.issued_at for c in found] == sorted((c.issued_at for c in found), reverse=True)
    mine = {c.code: c for c in service.coupons_of(runtime, ["P1"])}
    assert mine[issued["k3"].code].redeemed_via == "store" and mine[issued["k3"].code].shared
    assert mine[issued["k1"].code].redeemed_at is None and mine[issued["k1"].code].person_id == "P1"
