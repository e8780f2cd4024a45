"""The Segments page on the demo world: the catalogue as `omniweave segments list` and `GET /v1/segments` give it,
sizes and overlaps equal to a count made apart over the `segment_members` Parquet file, suggested personas as
`personas suggest` makes them, bad parameters named, and the audience export a POST with the CSRF token for the
roles that may activate (a successful one on a copy of the demo world: it writes files and a dataset)."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterator

import pyarrow.parquet as pq
import pytest

from omniweave.runtime import Runtime
from omniweave.segments.service.personas import suggest_from_profiles
from omniweave.settings import Settings
from tests.conftest import omniweave_cmd
from tests.shells.web.conftest import Dashboard, serve_home


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _members(dashboard: Dashboard) -> dict[str, set[str]]:
    """Each segment's members, read from the Parquet file apart from the service layer."""
    table = pq.read_table(dashboard.home / "warehouse" / "segment_members", columns=["segment_id", "person_id"])
    out: dict[str, set[str]] = defaultdict(set)
    for sid, pid in zip(*(table.column(c).to_pylist() for c in ("segment_id", "person_id")), strict=True):
        out[sid].add(pid)
    return out


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def test_segments_need_a_session(dashboard: Dashboard) -> None:
    answer = dashboard.client(None).get("/app/segments?segment=cart_abandoners")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/app/login?next=%2Fapp%2Fsegments%3Fsegment%3Dcart_abandoners"
    assert dashboard.client(None).post("/app/segments/export", data={"segment": "x"}).status_code == 303


def test_the_catalogue_is_the_cli_and_api_one_with_the_members_counted(dashboard: Dashboard) -> None:
    client = dashboard.client("analyst")
    page = client.get("/app/segments")
    assert page.status_code == 200, page.text
    rows = {r["id"]: r for r in _csv(client.get("/app/segments?csv=segments").text)}
    listed = json.loads(
        subprocess.run(
            omniweave_cmd("--home", str(dashboard.home), "segments", "list", "--format", "json"),
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert set(rows) == {s["id"] for s in listed}
    for s in listed:
        row = rows[s["id"]]
        assert (row["name"], row["source"], row["description"]) == (s["name"], s["source"], s["description"])
    api = {s["id"]: s for s in client.get("/v1/segments").json()}
    members = _members(dashboard)
    for sid, row in rows.items():
        assert int(row["members"] or 0) == (api[sid]["members"] or 0) == len(members.get(sid, ())), sid
    # the rule in words, as the definition says it
    assert rows["omnichannel_buyers"]["rule"] == "online_orders >= 1 and store_orders >= 1"
    assert rows["cart_abandoners"]["rule"] == (
        "performed Product Added in the last 7 days, then no Order Completed within 24 h"
    )
    assert (
        "lapsing_high_value" in page.text and 'id="fig-overlaps"' in page.text and 'id="fig-sizes_drawn"' in page.text
    )
    assert "Export audience" not in page.text  # an analyst does not export


def test_overlaps_and_sizes_equal_a_count_apart(dashboard: Dashboard) -> None:
    client = dashboard.client("marketer")
    members = _members(dashboard)
    matrix = _csv(client.get("/app/segments?csv=overlaps").text)
    ids = [r["segment"] for r in matrix]
    assert set(members) <= set(ids)
    for row in matrix:
        for other in ids:
            assert int(row[other]) == len(members.get(row["segment"], set()) & members.get(other, set())), (
                row["segment"],
                other,
            )
    for period in ("day", "month"):
        sizes = _csv(client.get(f"/app/segments?period={period}&csv=sizes").text)
        assert sizes, "no size history"
        last = sizes[-1]
        for sid, persons in members.items():
            assert int(last[sid]) == len(persons), (period, sid)  # every change is logged: the history ends at now
    one = _csv(client.get("/app/segments?segment=omnichannel_buyers&period=week&csv=history").text)
    assert int(one[-1]["members"]) == len(members["omnichannel_buyers"])
    assert sum(int(r["entered"]) - int(r["exited"]) for r in one) == len(members["omnichannel_buyers"])
    shared = {
        r["segment"]: int(r["in both"])
        for r in _csv(client.get("/app/segments?segment=omnichannel_buyers&csv=shared").text)
    }
    for other, n in shared.items():
        assert n == len(members["omnichannel_buyers"] & members.get(other, set())), other


def test_suggested_personas_are_those_of_personas_suggest(dashboard: Dashboard) -> None:
    shown = _csv(dashboard.client("marketer").get("/app/segments?suggest=1&k=4&csv=suggested").text)
    runtime = Runtime(Settings(home=str(dashboard.home)))
    try:
        made = suggest_from_profiles(runtime, k=4, seed=0)  # what `omniweave personas suggest --k 4` prints
    finally:
        runtime.close()
    assert [(r["id"], int(r["persons"]), int(r["rule selects"])) for r in shown] == [
        (p.persona.id, p.persona.size, p.rule_selects) for p in made.personas
    ]
    assert all(
        float(r["precision %"]) == round(p.precision * 100, 1) for r, p in zip(shown, made.personas, strict=True)
    )


def test_bad_parameters_are_named(dashboard: Dashboard) -> None:
    client = dashboard.client("marketer")
    for query, field in (
        ("segment=nope", "segment"),
        ("period=fortnight", "period"),
        ("suggest=yes", "suggest"),
        ("suggest=1&k=12", "k"),
        ("suggest=1&k=four", "k"),
    ):
        bad = client.get(f"/app/segments?{query}")
        assert bad.status_code == 400, query
        assert f"<code>{field}</code>" in bad.text, query
    assert "no segment &#39;nope&#39;" in client.get("/app/segments?segment=nope").text


def test_the_export_is_a_post_for_the_roles_that_activate(dashboard: Dashboard) -> None:
    analyst = dashboard.client("analyst")
    token = _csrf(analyst.get("/app/segments").text)  # the sign-out form's
    refused = analyst.post("/app/segments/export", data={"csrf": token, "segment": "omnichannel_buyers", "to": "csv"})
    assert refused.status_code == 403 and "journeys:run or config:manage" in refused.text
    marketer = dashboard.client("marketer")
    page = marketer.get("/app/segments?segment=omnichannel_buyers")
    assert 'action="/app/segments/export"' in page.text and 'method="post"' in page.text
    token = _csrf(page.text)
    forged = marketer.post(
        "/app/segments/export", data={"csrf": "0" * 64, "segment": "omnichannel_buyers", "to": "csv"}
    )
    assert forged.status_code == 403 and "CSRF" in forged.text
    bad = marketer.post("/app/segments/export", data={"csrf": token, "segment": "omnichannel_buyers", "to": "myspace"})
    assert bad.status_code == 400 and "<code>to</code>" in bad.text
    assert marketer.get("/app/segments/export/omnichannel_buyers/csv-20260101T000000Z.csv").status_code == 404
    assert marketer.get("/app/segments/export/omnichannel_buyers/..%2Fsecret.csv").status_code == 404
    assert not (dashboard.home / "exports").exists()  # nothing was written to the shared home


@pytest.fixture(scope="module")
def exporting(tmp_path_factory: pytest.TempPathFactory, dashboard: Dashboard) -> Iterator[Dashboard]:
    """A copy of the shared home: an export writes files and the `audience_exports` dataset."""
    home = tmp_path_factory.mktemp("segments-export") / "home"
    shutil.copytree(dashboard.home, home)
    for url in serve_home(home):
        yield Dashboard(url, home)


def test_a_marketer_exports_an_audience(exporting: Dashboard) -> None:
    client = exporting.client("marketer")
    token = _csrf(client.get("/app/segments?segment=omnichannel_buyers").text)
    done = client.post("/app/segments/export", data={"csrf": token, "segment": "omnichannel_buyers", "to": "csv"})
    assert done.status_code == 200, done.text
    figures = {k: int(v.replace(",", "")) for k, v in re.findall(r'data-figure="(\w+)">([\d,]+)<', done.text)}
    members = _members(exporting)["omnichannel_buyers"]
    assert figures["members"] == len(members)
    assert figures["exported"] + figures["skipped_no_consent"] + figures["skipped_no_identifier"] + figures[
        "skipped_privacy"
    ] == len(members)
    kept = pq.read_table(exporting.home / "warehouse" / "audience_exports").to_pylist()
    assert len(kept) == figures["keys"] == figures["adds"] and {r["person_id"] for r in kept} <= members
    links = re.findall(r'href="(/app/segments/export/omnichannel_buyers/[^"]+)"', done.text)
    assert len(links) == 3  # everything, the adds, the removes
    full = client.get(links[0])
    assert full.status_code == 200 and full.headers["content-type"].startswith("text/csv")
    assert len(_csv(full.text)) == figures["keys"]
    assert exporting.client("analyst").get(links[0]).status_code == 403


def test_every_kind_of_condition_reads_as_words() -> None:
    from omniweave.segments import language as S
    from omniweave.shells.web.pages.segments import rule_text

    where = {
        "any": [
            {"not": {"trait": "city", "in": ["Leeds", "York"]}},
            {
                "all": [
                    {"trait": "age", "between": [18, 30]},
                    {"trait": "name", "contains": "Ann"},
                    {"trait": "last_seen_at", "within_days": 7},
                    {"in_segment": "vip"},
                ]
            },
            {"not_performed": "Order Completed", "where": [{"property": "channel", "eq": "store"}], "within_days": 30},
            {"performed": "Page Viewed", "at_most": 3},
            {"bucket": {"salt": "test", "from": 0, "to": 50}},
        ]
    }
    assert rule_text(S.parse_segment({"id": "x", "where": where}).where) == (
        "not (city in (Leeds, York)) or (age between 18 and 30 and name contains 'Ann' and last_seen_at within the "
        "last 7 days and in segment vip) or did not perform Order Completed (channel = store) in the last 30 days "
        "or performed Page Viewed at most 3 times or bucket 0-49 of 'test'"
    )
