"""The Privacy page: only for privacy:admin (privacy officers, owners); the requests and their receipts as
`omniweave privacy requests` lists them (on a copy of the demo world with requests made in it), and the consent
rates equal to a count made apart over the profiles' Parquet file."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from omniweave.privacy.service.requests import get, submit
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from tests.conftest import omniweave_cmd
from tests.shells.web.conftest import Dashboard, serve_home


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _when(at: float | None) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S") if at else ""


@pytest.fixture(scope="module")
def with_requests(tmp_path_factory: pytest.TempPathFactory, dashboard: Dashboard) -> Iterator[Dashboard]:
    """A copy of the shared home in which two people were suppressed and one of them unsuppressed (an export
    would read the whole warehouse: ~15 CPU s)."""
    home = tmp_path_factory.mktemp("privacy") / "home"
    shutil.copytree(dashboard.home, home)
    emails = [
        e for e in pq.read_table(home / "warehouse" / "profiles", columns=["primary_email"]).column(0).to_pylist() if e
    ]
    runtime = Runtime(Settings(home=str(home)))
    try:
        submit(runtime, "suppress", f"email:{emails[0]}", requested_by="test")
        submit(runtime, "suppress", f"email:{emails[1]}", requested_by="test")
        submit(runtime, "unsuppress", f"email:{emails[1]}", requested_by="test")
    finally:
        runtime.close()
    for url in serve_home(home):
        yield Dashboard(url, home)


def test_privacy_is_for_privacy_officers_and_owners(dashboard: Dashboard) -> None:
    for role in ("marketer", "analyst"):
        client = dashboard.client(role)
        refused = client.get("/app/privacy")
        assert refused.status_code == 403 and "privacy:admin" in refused.text
        assert client.get("/app/privacy?csv=purposes").status_code == 403
        assert 'href="/app/privacy"' not in client.get("/app/overview").text  # not in the navigation either
    for role in ("privacy_officer", "owner"):
        page = dashboard.client(role).get("/app/privacy")
        assert page.status_code == 200, page.text
        assert "No data-subject request yet" in page.text  # the shared demo world has none
    assert dashboard.client(None).get("/app/privacy").status_code == 303


def test_consent_rates_equal_a_count_over_the_profiles(dashboard: Dashboard) -> None:
    profiles = pq.read_table(dashboard.home / "warehouse" / "profiles")
    client = dashboard.client("privacy_officer")
    shown = {}
    for table, prefix in (("purposes", "consent_purpose_"), ("channels", "consent_")):
        for row in _csv(client.get(f"/app/privacy?csv={table}").text):
            assert row["column"] == prefix + row["name"]
            shown[row["column"]] = row
    columns = [c for c in profiles.column_names if c.startswith("consent_")]
    assert set(shown) == set(columns) and "consent_purpose_advertising" in shown and "consent_email" in shown
    total = profiles.num_rows
    for column in columns:
        values = profiles.column(column).to_pylist()
        counts = (values.count(True), values.count(False), sum(v is None for v in values))
        row = shown[column]
        assert (int(row["granted"]), int(row["refused"]), int(row["never stated"])) == counts, column
        assert int(row["profiles"]) == total
        assert float(row["granted %"]) == pytest.approx(round(counts[0] / total * 100, 2))
        assert float(row["never %"]) == pytest.approx(round(counts[2] / total * 100, 2))
    assert any(int(r["granted"]) and int(r["refused"]) for r in shown.values())  # the demo states both


def test_requests_and_receipts_are_the_cli_s(with_requests: Dashboard) -> None:
    out = subprocess.run(
        omniweave_cmd("--home", str(with_requests.home), "privacy", "requests", "--format", "json"),
        check=True,
        capture_output=True,
        text=True,
    )
    cli = json.loads(out.stdout)
    assert [r["kind"] for r in cli] == ["unsuppress", "suppress", "suppress"]  # newest first
    client = with_requests.client("privacy_officer")
    rows = _csv(client.get("/app/privacy?csv=requests").text)
    assert [r["id"] for r in rows] == [r["id"] for r in cli]
    runtime = Runtime(Settings(home=str(with_requests.home)))
    try:
        receipts = {r["id"]: get(runtime, r["id"]).receipts for r in cli}
    finally:
        runtime.close()
    for row, want in zip(rows, cli, strict=True):
        assert (row["kind"], row["status"], row["subject"]) == (want["kind"], want["status"], want["subject"])
        assert row["person_id"] == (want["person_id"] or "") and row["error"] == (want["error"] or "")
        assert row["created"] == _when(want["created_at"]) and row["finished"] == _when(want["finished_at"])
        assert int(row["receipts"]) == len(receipts[want["id"]]) > 0
    shown = _csv(client.get("/app/privacy?csv=receipts").text)
    expected = [
        (request_id, r.target, r.action, str(r.count), r.detail, _when(r.at))
        for request_id in (w["id"] for w in cli)
        for r in receipts[request_id]
    ]
    assert [(r["request"], r["target"], r["action"], r["count"], r["detail"], r["at"]) for r in shown] == expected
    # one request opened: its receipts under it; an unknown one is a bad request naming the field
    first = cli[-1]
    page = client.get(f"/app/privacy?request={first['id']}")
    assert page.status_code == 200 and f"Receipts of {first['id']}" in page.text
    detail = page.text.split('id="request-detail"', 1)[1].split("</section>", 1)[0]
    assert [target for target in receipts[first["id"]] if f"<td>{target.target}</td>" not in detail] == []
    assert detail.count("<tr><td>") == len(receipts[first["id"]])
    bad = client.get("/app/privacy?request=dsr_nothing")
    assert bad.status_code == 400 and "<code>request</code>" in bad.text and "no privacy request" in bad.text
