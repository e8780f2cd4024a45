"""The Journeys page: the journeys as `journeys list` gives them, and on a copy of the demo world in which the store
event's invitations went out (the engine's API entry, the clock stepped through a week, RSVPs and attendances
arriving), one journey's per-node counts and holdout lift equal to `omniweave journeys stats --format json`, its
graph, a message preview (for an analyst: masked, without personalisation, nothing loaded from elsewhere), the
messages' feedback over time as the service counts it, and bad parameters named."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from omniweave.activate.service.journey_report import MEASURE_EVENTS
from omniweave.activate.service.journey_stats import find_journey, list_journeys
from omniweave.activate.service.journeys import JourneyEngine, publish
from omniweave.collect.emit import emit
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from tests.conftest import omniweave_cmd
from tests.shells.web.conftest import Dashboard, serve_home

JOURNEY = "store_event_invitation"
INVITED = 60
TICK = 3 * 3600.0
DAYS = 7
"""The engine's rounds cover a week: invitations, nudges, RSVPs, reminders and the first attendances."""


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


class _Clock:
    def __init__(self, at: float):
        self.at = at

    def __call__(self) -> float:
        return self.at


def _stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def _invite(home: Path) -> None:
    """The store event's invitations to the first customers with an e-mail address, as the demo sends them: the
    engine on the world's clock, three hours a round for a week; some RSVP within the hour, half of those attend
    five days later."""
    runtime = Runtime(Settings(home=str(home)))
    try:
        end = runtime.log.latest_event_time()
        assert end is not None
        clock = _Clock(end.timestamp())
        publish(runtime, find_journey(runtime.settings, JOURNEY), now=clock.at)
        profiles = pq.read_table(home / "warehouse" / "profiles", columns=["person_id", "emails", "user_ids"])
        invited = sorted(
            (r for r in profiles.to_pylist() if r["emails"] and r["user_ids"]), key=lambda r: r["person_id"]
        )
        invited = invited[:INVITED]
        engine = JourneyEngine(runtime, sink=str(home / "sends.jsonl"), clock=clock)
        assert engine.enter_many(JOURNEY, [r["person_id"] for r in invited], "dashboard-test") == INVITED
        answers = []
        for i, r in enumerate(invited[:20]):
            user = r["user_ids"][0]
            answers.append((clock.at + 3600, "Store Event RSVP", user, f"rsvp-{i}"))
            if i % 2 == 0:
                answers.append((clock.at + 5 * 86400, "Store Event Attended", user, f"attended-{i}"))
        start = clock.at
        for tick in range(1, int(DAYS * 86400 / TICK) + 1):
            clock.at = start + tick * TICK
            due = [a for a in answers if a[0] <= clock.at]
            answers = [a for a in answers if a[0] > clock.at]
            if due:
                emit(
                    runtime.store,
                    "shop",
                    [
                        {
                            "type": "track",
                            "event": name,
                            "userId": user,
                            "messageId": key,
                            "timestamp": _stamp(at),
                            "properties": {},
                        }
                        for at, name, user, key in due
                    ],
                )
            for _ in range(100):
                busy = 0
                while n := engine.consume(1000):
                    busy += n
                while n := engine.step(500):
                    busy += n
                busy += engine.dispatch()
                if not busy:
                    break
    finally:
        runtime.close()


@pytest.fixture(scope="module")
def invited(tmp_path_factory: pytest.TempPathFactory, dashboard: Dashboard) -> Iterator[Dashboard]:
    """A copy of the shared home in which the store event's invitations went out."""
    home = tmp_path_factory.mktemp("journeys") / "home"
    shutil.copytree(dashboard.home, home)
    _invite(home)
    for url in serve_home(home):
        yield Dashboard(url, home)


def test_journeys_need_a_session(dashboard: Dashboard) -> None:
    answer = dashboard.client(None).get("/app/journeys?journey=winback")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/app/login?next=%2Fapp%2Fjourneys%3Fjourney%3Dwinback"


def _feedback_per_week(home: Path, channel: str | None = None) -> dict[str, dict[str, int]]:
    """Deliveries, opens, clicks, bounces and unsubscribes per ISO week, counted apart with DuckDB over the event
    log's Parquet files (the names of each measure are the service's `MEASURE_EVENTS`)."""
    import duckdb

    names = {name: measure for measure, all_names in MEASURE_EVENTS.items() for name in all_names}
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        rows = con.execute(
            "SELECT date_trunc('week', CAST(timestamp AS DATE)) AS week, event, count(*) "
            f"FROM read_parquet('{home}/warehouse/events/**/*.parquet') "
            "WHERE channel IS NOT NULL AND (? IS NULL OR channel = ?) GROUP BY ALL",
            [channel, channel],
        ).fetchall()
    finally:
        con.close()
    out: dict[str, dict[str, int]] = {}
    for week, event, n in rows:
        if event in names:
            cell = out.setdefault(week.isoformat()[:10], dict.fromkeys(MEASURE_EVENTS, 0))
            cell[names[event]] += n
    return out


def test_the_list_and_the_messages_feedback(dashboard: Dashboard) -> None:
    client = dashboard.client("analyst")
    page = client.get("/app/journeys?period=week")
    assert page.status_code == 200, page.text
    runtime = Runtime(Settings(home=str(dashboard.home)))
    try:
        listed = {j.name: j for j in list_journeys(runtime)}
    finally:
        runtime.close()
    rows = {r["name"]: r for r in _csv(client.get("/app/journeys?period=week&csv=journeys").text)}
    assert set(rows) == set(listed)
    for name, row in rows.items():
        assert row["source"] == listed[name].source and row["entry"] == listed[name].entry
    shown = {
        r.pop("period"): {m: int(v) for m, v in r.items()}
        for r in _csv(client.get("/app/journeys?period=week&csv=activity").text)
    }
    assert shown == _feedback_per_week(dashboard.home)
    assert sum(r["delivered"] for r in shown.values()) > 0  # the demo's campaigns were delivered, opened, clicked
    on_sms = {
        r.pop("period"): {m: int(v) for m, v in r.items()}
        for r in _csv(client.get("/app/journeys?period=week&channel=sms&csv=activity").text)
    }
    assert on_sms == _feedback_per_week(dashboard.home, "sms")


def test_bad_parameters_are_named(dashboard: Dashboard) -> None:
    client = dashboard.client("marketer")
    for query, field in (
        ("journey=nope", "journey"),
        ("period=hour", "period"),
        ("channel=fax", "channel"),
        ("journey=winback&message=nope", "message"),
        ("journey=winback&message=winback_coupon&via=fax", "via"),
    ):
        bad = client.get(f"/app/journeys?{query}")
        assert bad.status_code == 400, query
        assert f"<code>{field}</code>" in bad.text, query
    assert "no journey &#39;nope&#39;" in client.get("/app/journeys?journey=nope").text
    unpublished = client.get("/app/journeys?journey=winback")  # a built-in journey the shared world never ran
    assert unpublished.status_code == 200 and "not published" in unpublished.text


def test_a_journeys_counts_are_journeys_stats(invited: Dashboard) -> None:
    stats = json.loads(
        subprocess.run(
            omniweave_cmd("--home", str(invited.home), "journeys", "stats", JOURNEY, "--format", "json"),
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    client = invited.client("marketer")
    page = client.get(f"/app/journeys?journey={JOURNEY}")
    assert page.status_code == 200, page.text
    nodes = {r["node"]: r for r in _csv(client.get(f"/app/journeys?journey={JOURNEY}&csv=nodes").text)}
    assert nodes["invite"]["entered"] == str(INVITED)
    for n in stats["nodes"]:
        row = nodes[n["node"]]
        assert (int(row["entered"]), int(row["sent"]), int(row["converted"])) == (
            n["entered"],
            n["sent"],
            n["converted"],
        )
        assert int(row["skipped"]) == sum(n["skipped"].values())
    assert sum(n["sent"] for n in stats["nodes"]) > 0 and sum(n["converted"] for n in stats["nodes"]) > 0
    skipped = {
        (r["node"], r["reason"]): int(r["skipped"])
        for r in _csv(client.get(f"/app/journeys?journey={JOURNEY}&csv=skipped").text)
    }
    assert skipped == {(n["node"], reason): c for n in stats["nodes"] for reason, c in n["skipped"].items()}
    holdout = {r["group"]: r for r in _csv(client.get(f"/app/journeys?journey={JOURNEY}&csv=holdout").text)}
    assert (int(holdout["treated"]["runs"]), int(holdout["treated"]["converted"])) == (
        stats["treated"]["runs"],
        stats["treated"]["converted"],
    )
    assert (int(holdout["held out"]["runs"]), int(holdout["held out"]["converted"])) == (
        stats["held_out"]["runs"],
        stats["held_out"]["converted"],
    )
    lift = stats["lift"]
    assert lift is not None
    assert f"{lift['difference'] * 100:+.2f} points" in page.text and f"p = {lift['p_value']:.4g}" in page.text
    runs = ", ".join(f"{k} {v}" for k, v in sorted(stats["runs"].items()))
    assert f'<strong id="journey-runs">{runs}</strong>' in page.text
    # the graph: one node per step of the definition, an arrow per way out
    found = re.search(r'id="fig-nodes".*?data-option="([^"]*)"', page.text, re.S)
    assert found is not None
    option = json.loads(html.unescape(found.group(1)))
    series = option["series"][0]
    assert series["type"] == "graph"
    steps = find_journey(Settings(home=str(invited.home)), JOURNEY).steps
    assert {d["name"] for d in series["data"]} == set(steps)
    assert len(series["links"]) == sum(len(s.targets()) for s in steps.values())


def test_a_message_preview_for_an_analyst_is_masked_and_loads_nothing(invited: Dashboard) -> None:
    client = invited.client("analyst")
    page = client.get(f"/app/journeys?journey={JOURNEY}")
    assert f"message={JOURNEY}&amp;via=email" in page.text and "<iframe" not in page.text  # previews on request
    shown = client.get(f"/app/journeys?journey={JOURNEY}&message={JOURNEY}&via=email")
    assert shown.status_code == 200, shown.text
    frame = re.search(r"<iframe ([^>]*)>", shown.text)
    assert frame is not None and 'sandbox=""' in frame.group(1)
    srcdoc = re.search(r'srcdoc="([^"]*)"', frame.group(1))
    assert srcdoc is not None and "&lt;html" in srcdoc.group(1)
    assert not re.search(r"\ssrc=&#34;https?:", srcdoc.group(1))  # the logo is not fetched
    assert "data-blocked-src" in srcdoc.group(1)
    assert "without personalisation and with addresses masked" in shown.text
    to = re.search(r"<dt>to</dt><dd>([^<]*)</dd>", shown.text)
    assert to is not None and "***" in to.group(1)
    assert re.search(r'id="preview-person">P[0-9a-f]+<', shown.text)
