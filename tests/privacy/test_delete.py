"""Deleting a person everywhere, by one identifier (issue 24 §2, "how it will be checked").

A demo-like world (web, app, e-mail and store activity; tests/privacy/world.py) is built through the
collector and the importers; the collector keeps running while Annabel is deleted by her e-mail, written
in another case. Afterwards no file under the home holds any of her identifiers or her name (a byte
search of every file, and the decompressed rows of every Parquet file), the other customers' figures
are the same, the receipt lists every target, and her e-mail is refused at ingest.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from omniweave.collect.loader import load_all
from omniweave.collect.service import import_file
from omniweave.privacy.service.consent import sync_consent
from omniweave.privacy.service.requests import get, resume_pending, run, submit
from omniweave.runtime import Runtime
from omniweave.shells.api.app import create_app
from omniweave.storage.ops.tables import coupons, sends
from tests.privacy.world import TARGET, basic, build_world, files_containing, person, revenue_by_person, wait_until

NEEDLES = [
    TARGET[k].encode()
    for k in ("user_id", "anonymous_id", "device_id", "email", "phone", "phone_e164", "loyalty_card", "customer_number")
] + [b"annabel", b"targetson", hashlib.sha256(TARGET["email"].encode()).hexdigest().encode()]


def parquet_rows_containing(home: Path, needles: list[bytes]) -> dict[str, int]:
    """Rows of every Parquet file under `home`, decompressed, that hold a needle."""
    hits = {}
    for path in home.rglob("*.parquet"):
        rows = [orjson.dumps(r, default=str).lower() for r in pq.read_table(path).to_pylist()]
        n = sum(1 for row in rows if any(needle.lower() in row for needle in needles))
        if n:
            hits[str(path.relative_to(home))] = n
    return hits


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    return build_world(tmp_path_factory.mktemp("privacy-delete"))


def test_delete_by_one_identifier_reaches_everywhere(world) -> None:
    settings = world.settings.with_overrides(privacy=world.settings.privacy.__class__(blocklist_refresh_seconds=1.0))
    runtime = Runtime(settings)
    try:
        assert files_containing(world.home, NEEDLES), "the world holds the person before the deletion"
        sync_consent(runtime)
        before = revenue_by_person(runtime)
        with runtime.store.engine.connect() as conn:
            sends_before = conn.execute(sa.select(sa.func.count()).select_from(sends)).scalar_one()
            coupons_before = conn.execute(sa.select(sa.func.count()).select_from(coupons)).scalar_one()
        with TestClient(create_app(settings)) as client:
            headers = {"Authorization": basic(world.write_key), "Content-Type": "application/json"}

            def post(event: dict) -> object:
                return client.post("/v1/batch", content=orjson.dumps({"batch": [event]}), headers=headers)

            # an event of hers that reached the inbox but not the log yet
            late = {"type": "track", "event": "Product Viewed", "userId": TARGET["user_id"], "messageId": "late-1"}
            assert post(late).status_code == 200
            result = submit(runtime, "delete", "email:" + TARGET["email"].upper())
            assert result.status == "done", result
            targets = {r.target for r in result.receipts}
            for expected in (
                "collector:blocklist",
                "ops:inbox",
                "warehouse:events",
                "warehouse:identities",
                "warehouse:identity_state",
                "warehouse:profiles",
                "warehouse:segment_members",
                "warehouse:audience_exports",
                "ops:sends",
                "ops:coupons",
                "ops:suppressions",
                "ops:consent_history",
                "ops:compact",
            ):
                assert expected in targets, (expected, sorted(targets))
            assert any(t.startswith("file:exports/audiences/") for t in targets), sorted(targets)
            assert all(r.at > 0 for r in result.receipts)

            # new events with her e-mail (any case) are refused by the running collector within its refresh time
            def refused() -> bool:
                r = post(
                    {"type": "identify", "anonymousId": "new-browser", "traits": {"email": TARGET["email"].title()}}
                )
                return r.status_code == 400 and r.json()["errors"][0]["field"] == "email"

            assert wait_until(refused, timeout=10)
            again = post({"type": "track", "event": "Product Viewed", "userId": TARGET["user_id"], "messageId": "x2"})
            assert again.status_code == 400
            other = post(
                {"type": "track", "event": "Product Viewed", "userId": person(3)["user_id"], "messageId": "o-1"}
            )
            assert other.status_code == 200
        load_all(runtime.store, runtime.log)
        # the till file read again: her receipts are refused, the others' are duplicates
        again = import_file(runtime, "till", world.home.parent / "till.csv")
        assert (again.rows_imported, again.rows_rejected) == (0, 2), again
        after = revenue_by_person(runtime)
        with runtime.store.engine.connect() as conn:
            sends_after = conn.execute(sa.select(sa.func.count()).select_from(sends)).scalar_one()
            coupons_after = conn.execute(sa.select(sa.func.count()).select_from(coupons)).scalar_one()
    finally:
        runtime.close()
    # no byte of her under the home: Parquet, SQLite (and its WAL), audience files
    assert files_containing(world.home, NEEDLES) == {}
    assert parquet_rows_containing(world.home, NEEDLES) == {}
    # the other customers' figures did not move (one more event for customer 3: the one posted above)
    for hers in (TARGET["user_id"], TARGET["customer_number"]):  # web and app; the tills' customer number
        assert hers not in after
        before.pop(hers)
    before[person(3)["user_id"]] = (before[person(3)["user_id"]][0] + 1, before[person(3)["user_id"]][1])
    assert after == before
    assert (sends_after, coupons_after) == (sends_before, coupons_before)  # kept, anonymised


def test_a_second_run_is_safe_and_a_job_survives_a_restart(world) -> None:
    runtime = Runtime(world.settings)
    try:
        first = submit(runtime, "delete", person(5)["email"], run_now=False)
        assert first.status == "pending"
        # a restart: another process finds the pending job and finishes it
        other = Runtime(world.settings)
        try:
            [done] = resume_pending(other)
        finally:
            other.close()
        assert done.status == "done" and done.id == first.id
        removed = {r.target: r.count for r in done.receipts}
        assert removed["warehouse:events"] > 0
        assert run(runtime, first.id).receipts == get(runtime, first.id).receipts  # done: nothing more to do
        again = submit(runtime, "delete", person(5)["email"])
        assert again.status == "done"
        assert all(r.count == 0 for r in again.receipts if r.target.startswith(("warehouse:", "ops:inbox", "file:")))
        with runtime.store.engine.connect() as conn:
            work = conn.execute(sa.text("SELECT count(*) FROM privacy_requests WHERE work IS NOT NULL")).scalar_one()
        assert work == 0
    finally:
        runtime.close()
    assert files_containing(world.home, [person(5)["email"].encode()]) == {}
