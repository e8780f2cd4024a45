"""`omniweave demo`: generate the demo retailer and run it through the public doors.

Online events go to the collector over HTTP exactly as SDKs would send them (`POST /v1/batch`,
HTTP Basic auth with each source's write key), the inbox is drained into the event log, and
every offline file goes through the built-in importer of its kind. For big worlds (more than
`BULK_THRESHOLD` customers) the online JSON lines go through the bulk `segment` importer instead.

Running the demo again on the same home adds nothing: the world is deterministic for its
parameters (same files, same messageIds, same row keys), a world that was loaded completely is
not sent again, and a load that was interrupted is simply repeated (the collector deduplicates
by messageId, the importers by row key). A home holds one demo world: asking for a different one
(other seed or size) on a home that has one is refused.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Self

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from omniweave.demo.generator import DEFAULT_END_DATE, MANIFEST, generate_world
from omniweave.demo.journeys import stretch_start
from omniweave.demo.model import DEFAULT_EFFECTS, ChannelEffect, true_orders
from omniweave.demo.sinks import OFFLINE_COLUMNS, ONLINE_SOURCES
from omniweave.errors import InputError, OmniweaveError, TerminalStoreError
from omniweave.runtime import Runtime
from omniweave.settings import Settings

BULK_THRESHOLD = 50_000
BATCH_EVENTS = 500
BATCH_BYTES = 400_000  # under the collector's default 500 KB request limit
CONNECTIONS = 4
LOADED_MARKER = "loaded.json"
OFFLINE_ORDER = (
    "customers",
    "loyalty",
    "till",
    "store_visits",
    "coupons",
    "gift_cards",
    "qr_scans",
    "call_centre",
    "direct_mail",
    "email_export",
    "surveys",
    "ad_spend",
)
REFERENCE_FILES = ("stores", "products")
"""Reference datasets the demo imports from its ground-truth folder (what the retailer knows about itself)."""


@dataclass
class DemoResult:
    """What a demo run did: the world's manifest, what was sent/imported, the summary tables."""

    folder: Path
    manifest: dict[str, Any]
    generated: bool = False
    sent: dict[str, int] = field(default_factory=dict)  # online stream → events accepted over HTTP
    loaded: int = 0  # events moved from the inbox into the log
    imports: dict[str, Any] = field(default_factory=dict)  # kind → ImportSummary
    skipped: bool = False  # the world was already loaded
    timings: dict[str, float] = field(default_factory=dict)
    summary: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    identity: Any = None  # identity.service.resolve.Evaluation against the ground truth
    report: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # headline KPIs, attribution, CLV
    segments: list[dict[str, Any]] = field(default_factory=list)  # the built-in segments: id, name, members
    insights: Any = None  # demo.insight_check.InsightCheck: the profile insights against the truth
    journeys: Any = None  # demo.journeys.Activation: the journeys over the last days against the world's truth


def _progress(console: Console | None) -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=console is None,
    )


def run_demo(
    settings: Settings,
    customers: int = 2000,
    days: int = 60,
    seed: int = 7,
    console: Console | None = None,
    *,
    bulk: bool | None = None,
    end_date: date = DEFAULT_END_DATE,
    effects: tuple[ChannelEffect, ...] = DEFAULT_EFFECTS,
    journey_days: int = 0,
    load_only: bool = False,
) -> DemoResult:
    """Generate the demo world into `<home>/demo/` and load it through collector and importers; `effects`
    replaces the channels' true effects (the same touches, other purchases). With `journey_days`, the
    built-in journeys run over the world's last days and its customers react (demo/journeys.py); the
    stretch is at most half the world, and not run on the bulk path. With `load_only`, it stops once the world
    is loaded, before resolve and the stages after it (for a caller that runs them itself)."""
    if customers < 1 or days < 1:
        raise InputError(f"customers and days must be at least 1 (got {customers} and {days})")
    if journey_days < 0:
        raise InputError(f"journey_days must be 0 (no journeys) or more (got {journey_days})")
    folder = settings.home_path / "demo"
    key = _world_key(f"{seed}-{customers}-{days}-{end_date.isoformat()}", effects == DEFAULT_EFFECTS)
    bulk = customers > BULK_THRESHOLD if bulk is None else bulk
    journey_days = 0 if bulk else min(journey_days, days // 2)
    load_key = f"{key}-journeys{journey_days}" if journey_days else key
    marker = _read_json(folder / LOADED_MARKER)
    if marker and marker.get("world") != load_key:
        raise InputError(
            f"{settings.home} already holds the demo world {marker.get('world')} (seed-customers-days-end); "
            f"run the demo for {load_key} with another --home, or delete {settings.home} first"
        )
    timings: dict[str, float] = {}
    manifest = _read_json(folder / MANIFEST)
    generated = False
    if not manifest or _world_key(str(manifest.get("world")), bool(manifest.get("default_effects", True))) != key:
        started = time.perf_counter()
        with _progress(console) as progress:
            task = progress.add_task("generating the world", total=customers * days)
            manifest = generate_world(
                folder,
                customers,
                days,
                seed,
                end_date=end_date,
                effects=effects,
                progress=lambda done, total: progress.update(task, completed=done),
            )
        timings["generate"] = time.perf_counter() - started
        generated = True
    result = DemoResult(folder, manifest, generated=generated, timings=timings)
    runtime = Runtime(settings)
    try:
        since = stretch_start(str(manifest["end_date"]), journey_days) if journey_days else None
        if marker and marker.get("complete"):
            result.skipped = True
            _note(console, f"the demo world {load_key} is already loaded in {settings.home}; nothing sent again")
        else:
            steps = _Marker(folder, load_key, marker)
            steps.save()
            if steps.has("online"):
                _note(console, "online events: already loaded by an earlier, interrupted run")
            else:
                if bulk:
                    _import_online(runtime, folder, result, console)
                else:
                    _send_online(runtime, folder, result, console, before=since)
                _drain(runtime, result, console)
                steps.finish("online")
            _import_reference(runtime, folder, result, console, steps)
            _import_offline(runtime, folder, result, console, steps)
            if not steps.has("examples"):  # Ann, the A/B test and README's example files (demo/examples.py)
                from omniweave.demo.examples import import_examples

                result.imports.update(import_examples(runtime, folder))
                steps.finish("examples")
            if since is None:
                steps.save(complete=True)
        if load_only:
            return result
        started = time.perf_counter()
        _resolve(runtime, folder, result, console)
        timings["resolve"] = time.perf_counter() - started
        started = time.perf_counter()
        _profiles(runtime, console)
        timings["profiles"] = time.perf_counter() - started
        if since is not None and not result.skipped:  # the journeys over the held-back stretch, then again
            _journeys(runtime, folder, result, console, since)
            _Marker(folder, load_key, _read_json(folder / LOADED_MARKER)).save(complete=True)
            started = time.perf_counter()
            _profiles(runtime, console)
            timings["profiles"] += time.perf_counter() - started
        started = time.perf_counter()
        result.summary = summarize(runtime)
        timings["summary"] = time.perf_counter() - started
        started = time.perf_counter()
        result.report = report(runtime, folder)
        timings["report"] = time.perf_counter() - started
        started = time.perf_counter()
        result.segments = _segments(runtime)
        timings["segments"] = time.perf_counter() - started
        started = time.perf_counter()
        from omniweave.demo.insight_check import check_insights

        result.insights = check_insights(runtime, folder)
        timings["insights"] = time.perf_counter() - started
        if since is not None and result.journeys is None:  # loaded by an earlier run: measured again
            from omniweave.demo.journeys import load_activation

            result.journeys = load_activation(runtime, folder)
    finally:
        runtime.close()
    if console:
        print_summary(console, result)
    return result


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class _Marker:
    """`loaded.json`: the world this home holds, the load steps finished so far, and whether all are.

    A run interrupted in the middle of a step redoes that step (safe: deduplication), not the
    steps before it.
    """

    def __init__(self, folder: Path, key: str, previous: dict[str, Any] | None):
        self.path, self.key = folder / LOADED_MARKER, key
        same = previous is not None and previous.get("world") == key
        self.done: list[str] = list(previous.get("done", [])) if same and previous else []

    def has(self, step: str) -> bool:
        return step in self.done

    def finish(self, step: str) -> None:
        self.done.append(step)
        self.save()

    def save(self, complete: bool = False) -> None:
        self.path.write_text(json.dumps({"world": self.key, "complete": complete, "done": self.done}))


def _note(console: Console | None, text: str) -> None:
    if console:
        console.print(f"[dim]{text}[/dim]")


def write_key_for(runtime: Runtime, source: str) -> str:
    """The write key of `source`, creating the source the first time."""
    try:
        return runtime.store.create_source(source)[1]
    except TerminalStoreError:
        for row in runtime.store.list_sources():
            if row["name"] == source:
                return str(row["write_key"])
        raise


# --- online over HTTP -------------------------------------------------------------------------


class _Collector:
    """The collector app under uvicorn in a background thread, on a free local port."""

    def __init__(self, settings: Settings):
        import uvicorn

        from omniweave.shells.api.app import create_app

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(create_app(settings), log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="omniweave-demo-collector", daemon=True
        )

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise OmniweaveError("the collector did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
        self.sock.close()


def batches(
    path: Path,
    max_events: int = BATCH_EVENTS,
    max_bytes: int = BATCH_BYTES,
    keep: Callable[[bytes], bool] | None = None,
) -> Iterator[tuple[bytes, int]]:
    """`{"batch": [...]}` bodies of at most `max_events` events / `max_bytes` bytes (the lines `keep` keeps), and
    their sizes."""
    lines: list[bytes] = []
    size = 0
    with open(path, "rb") as fh:
        for line in fh:
            line = line.rstrip(b"\n")
            if not line or (keep is not None and not keep(line)):
                continue
            if lines and (len(lines) >= max_events or size + len(line) + 1 > max_bytes):
                yield b'{"batch":[' + b",".join(lines) + b"]}", len(lines)
                lines, size = [], 0
            lines.append(line)
            size += len(line) + 1
    if lines:
        yield b'{"batch":[' + b",".join(lines) + b"]}", len(lines)


def _post(client: httpx.Client, url: str, write_key: str, body: bytes) -> None:
    """POST one batch; retries what the collector says is worth retrying (429, 503, network)."""
    for attempt in range(8):
        try:
            response = client.post(
                url, content=body, auth=(write_key, ""), headers={"content-type": "application/json"}
            )
        except httpx.TransportError:
            time.sleep(0.2 * 2**attempt)
            continue
        if response.status_code == 200:
            return
        if response.status_code in (429, 503):
            time.sleep(float(response.headers.get("retry-after", "1")))
            continue
        raise OmniweaveError(f"the collector refused a demo batch: HTTP {response.status_code} {response.text[:500]}")
    raise OmniweaveError("the collector kept failing; gave up after 8 attempts")


def _send_online(
    runtime: Runtime, folder: Path, result: DemoResult, console: Console | None, before: float | None = None
) -> None:
    """POST the online events (those before `before` only, when given: the journeys' stretch is held back)."""
    from omniweave.demo.journeys import held, listened_to

    started = time.perf_counter()
    files = {stream: folder / "online" / f"{stream}.jsonl" for stream in ONLINE_SOURCES}
    total = sum(int(result.manifest["files"][f"online/{s}"]) for s in files)
    keep = None
    if before is not None:
        listened = listened_to(runtime)
        keep = lambda line: not held(json.loads(line), before, listened)  # noqa: E731
    if keep is not None:
        total = sum(count for path in files.values() for _, count in batches(path, keep=keep))
    keys = {stream: write_key_for(runtime, source) for stream, source in ONLINE_SOURCES.items()}
    with (
        _Collector(runtime.settings) as collector,
        _progress(console) as progress,
        httpx.Client(limits=httpx.Limits(max_connections=CONNECTIONS), timeout=120) as client,
        ThreadPoolExecutor(CONNECTIONS) as pool,
    ):
        task = progress.add_task("sending online events (HTTP)", total=total)
        url = f"{collector.url}/v1/batch"
        lock = threading.Lock()

        def send(stream: str, body: bytes, count: int) -> None:
            _post(client, url, keys[stream], body)
            with lock:
                result.sent[stream] = result.sent.get(stream, 0) + count
            progress.advance(task, count)

        pending = []
        for stream, path in files.items():
            for body, count in batches(path, keep=keep):
                pending.append(pool.submit(send, stream, body, count))
                if len(pending) >= CONNECTIONS * 4:
                    pending.pop(0).result()
        for future in pending:
            future.result()
    result.timings["send"] = time.perf_counter() - started


def _import_online(runtime: Runtime, folder: Path, result: DemoResult, console: Console | None) -> None:
    from omniweave.demo.bulk import import_online

    started = time.perf_counter()
    total = sum(int(result.manifest["files"][f"online/{s}"]) for s in ONLINE_SOURCES)
    with _progress(console) as progress:
        task = progress.add_task("importing online events (bulk)", total=total)
        summaries = import_online(runtime, folder, lambda n: progress.advance(task, n))
    for stream, summary in summaries.items():
        result.imports[f"segment:{stream}"] = summary
        if console:
            console.print(f"  {summary.describe()}")
    result.timings["import_online"] = time.perf_counter() - started


def _drain(runtime: Runtime, result: DemoResult, console: Console | None) -> None:
    from omniweave.collect.loader import LOADER, load_all

    started = time.perf_counter()
    state = runtime.store.consumers().get(LOADER)
    backlog = runtime.store.max_seq() - (state.position if state else 0)
    with _progress(console) as progress:
        task = progress.add_task("loading inbox → event log", total=max(backlog, 0))
        result.loaded = load_all(
            runtime.store, runtime.log, runtime.settings.loader_batch_size, progress=lambda n: progress.advance(task, n)
        )
    result.timings["load"] = time.perf_counter() - started


def _import_offline(
    runtime: Runtime, folder: Path, result: DemoResult, console: Console | None, marker: _Marker
) -> None:
    from omniweave.collect.service import import_file
    from omniweave.demo.bulk import BIG_FILE_BYTES, import_large_csv

    started = time.perf_counter()
    assert set(OFFLINE_ORDER) == set(OFFLINE_COLUMNS)
    if console:
        console.print("importing the offline files:")
    for kind in OFFLINE_ORDER:
        path = folder / "offline" / f"{kind}.csv"
        if marker.has(f"offline:{kind}"):
            _note(console, f"  {path.name}: already imported by an earlier, interrupted run")
            continue
        if path.stat().st_size > BIG_FILE_BYTES:
            with _progress(console) as progress:
                task = progress.add_task(
                    f"importing {path.name}", total=int(result.manifest["files"][f"offline/{kind}"])
                )
                summary = import_large_csv(runtime, kind, path, lambda n: progress.advance(task, n))  # noqa: B023
        else:
            summary = import_file(runtime, kind, path, console=console)
        result.imports[kind] = summary
        marker.finish(f"offline:{kind}")
        if console:
            console.print(f"  {summary.describe()}")
    result.timings["import_offline"] = time.perf_counter() - started


def _import_reference(
    runtime: Runtime, folder: Path, result: DemoResult, console: Console | None, marker: _Marker
) -> None:
    """The stores and products lists (floor areas, unit costs) as the `stores` and `products` datasets."""
    from omniweave.collect.service import import_file

    for kind in REFERENCE_FILES:
        if marker.has(f"reference:{kind}"):
            continue
        summary = import_file(runtime, kind, folder / "ground_truth" / f"{kind}.csv", console=console)
        result.imports[kind] = summary
        marker.finish(f"reference:{kind}")
        if console:
            console.print(f"  {summary.describe()}")


def _journeys(runtime: Runtime, folder: Path, result: DemoResult, console: Console | None, since: float) -> None:
    """The journeys over the held-back stretch (demo/journeys.py), once the history is resolved and profiled (the
    held-back events carry the identifiers of their sessions, which are history: nothing new to resolve); the
    stretch's events go in tick by tick, and the inbox is loaded into the log at the end."""
    from omniweave.demo.journeys import activate, held_back, listened_to

    started = time.perf_counter()
    events = held_back(folder, since, listened_to(runtime))
    until = stretch_start(str(result.manifest["end_date"]), 0)
    keys = {stream: write_key_for(runtime, source) for stream, source in ONLINE_SOURCES.items()}
    with _progress(console) as progress:
        task = progress.add_task("journeys over the last days", total=1)
        result.journeys = activate(
            runtime,
            folder,
            events,
            since,
            until,
            keys=keys,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    for stream, count in result.journeys.posted.items():
        result.sent[stream] = result.sent.get(stream, 0) + count
    _drain(runtime, result, console)
    from omniweave.demo.signups import kpi_by_placement  # the form sign-ups' KPI, beside their truth

    result.journeys.signup_kpi = kpi_by_placement(runtime)
    result.timings["journeys"] = time.perf_counter() - started


def _profiles(runtime: Runtime, console: Console | None) -> None:
    """Rebuild the recommendations and the unified profiles from the log and the identities just resolved."""
    from omniweave.profiles.service.build import build_profiles
    from omniweave.profiles.service.recommendations import build_recommendations

    build_recommendations(runtime)
    summary = build_profiles(runtime)
    if console is not None:
        console.print(
            f"profiles: {summary.persons:,} persons, {summary.buyers:,} of them buyers, from {summary.events:,} events"
        )


def _segments(runtime: Runtime) -> list[dict[str, Any]]:
    """Evaluate the segments (the built-in library and the project's): their sizes, and changes logged as events.

    Run after the summary and the report, so that those count the world's own events only."""
    from omniweave.segments.service.evaluate import evaluate_segments

    summary = evaluate_segments(runtime)
    return [
        {"segment": r.segment_id, "name": r.name, "members": r.members, "entered": r.entered, "exited": r.exited}
        for r in summary.results
    ]


def _resolve(runtime: Runtime, folder: Path, result: DemoResult, console: Console | None) -> None:
    """Stitch identities (incremental: only events not seen yet) and score them against the ground truth."""
    from omniweave.identity.service.resolve import evaluate_against_ground_truth, resolve

    resolve(runtime, console=console)
    result.identity = evaluate_against_ground_truth(runtime, folder)
    if console:
        console.print(result.identity.describe())


# --- the summary ----------------------------------------------------------------------------------

SUMMARY_QUERIES: dict[str, str] = {
    "events per channel": "SELECT channel, count(*) AS events FROM events GROUP BY channel ORDER BY events DESC",
    "events per type": (
        "SELECT type, coalesce(event, '') AS event, count(*) AS events FROM events "
        "GROUP BY type, event ORDER BY events DESC"
    ),
    "orders and revenue": (
        "SELECT CASE WHEN channel = 'store' THEN 'store' ELSE 'online' END AS where_bought, "
        "count(*) AS orders, round(sum(CAST(json_extract_string(properties, '$.revenue') AS DOUBLE)), 2) AS revenue "
        "FROM events WHERE event = 'Order Completed' GROUP BY where_bought ORDER BY where_bought"
    ),
    "spend per channel": (
        "SELECT channel, round(sum(spend), 2) AS spend, sum(impressions) AS impressions, sum(clicks) AS clicks "
        "FROM spend GROUP BY channel ORDER BY spend DESC"
    ),
}


HEADLINE_KPIS = (
    "page_views",
    "website_users",
    "video_views",
    "store_visitors",
    "pages_per_session",
    "coupon_redemption_rate",
    "gift_card_redemption_rate",
    "revenue_online",
    "revenue_in_store",
    "revenue_total",
    "conversion_rate",
    "new_customers",
    "customer_acquisition_cost",
    "retention_rate",
    "repeat_purchase_rate",
    "net_promoter_score",
    "customer_lifetime_value",
)


REPORT_LOOKBACK_DAYS = 7.0
"""The demo report's attribution lookback: the demo world's effects fade within days, and a longer lookback
also credits the orders the touched would have placed anyway (docs/attribution.md)."""


def _world_key(key: str, default_effects: bool) -> str:
    """seed-customers-days-end, marked when the channels' effects are not the default ones."""
    return key if default_effects else f"{key}-custom-effects"


def report(runtime: Runtime, folder: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """The measure stage on the demo: headline KPIs per month, every attribution model side by side on the
    journeys of the log (with ROAS where there is spend, and each channel's true incremental orders from the
    ground truth in `folder`), and the RFM segments worth most by predicted CLV."""
    from omniweave.measure.attribution import MODELS, attribute
    from omniweave.measure.service.kpis import PREVIOUS_PERIOD_KPIS, kpi_table
    from omniweave.measure.service.paths import journeys_from_log, returns

    kpis = kpi_table(runtime, period="month", kpis=HEADLINE_KPIS).to_pylist()
    months = sorted({row["period"] for row in kpis})
    # a month that is not whole (the world starts or ends inside it) is marked with "*" (docs/kpis.md)
    partial = {row["period"] for row in kpis if row["partial"] and row["kpi"] not in PREVIOUS_PERIOD_KPIS}
    headline = [
        {
            "kpi": name,
            "scope": next((r["scope"] for r in kpis if r["kpi"] == name), ""),
            **{
                m.strftime("%Y-%m") + ("*" if m in partial else ""): next(
                    (r["value"] for r in kpis if r["kpi"] == name and r["period"] == m), None
                )
                for m in months
            },
        }
        for name in HEADLINE_KPIS
        if any(r["kpi"] == name for r in kpis)
    ]
    journeys = journeys_from_log(runtime, lookback_days=REPORT_LOOKBACK_DAYS)
    results = {name: attribute(journeys.paths, name) for name in MODELS}
    markov = returns(results["markov"], journeys.spend)
    effects_file = folder / "ground_truth" / "channel_effects.json" if folder else None
    truth = true_orders(json.loads(effects_file.read_text())) if effects_file and effects_file.is_file() else {}
    attribution = [
        {
            "channel": channel,
            "true incremental orders": truth.get(channel),
            **{f"{name} orders": results[name].conversions[channel] for name in MODELS},
            "markov revenue": results["markov"].value[channel],
            "spend": journeys.spend.get(channel),
            "markov ROAS": markov[channel].roas if channel in markov else None,
        }
        for channel in sorted(journeys.paths.channels, key=lambda c: -results["markov"].conversions[c])
    ]
    segments = (
        runtime.warehouse()
        .sql(
            "SELECT rfm_segment, count(*) AS buyers, round(avg(clv_12m), 2) AS mean_clv_12m, "
            "round(avg(p_alive), 3) AS mean_p_alive, round(avg(total_revenue), 2) AS mean_revenue_so_far "
            "FROM profiles WHERE rfm_segment IS NOT NULL GROUP BY rfm_segment "
            "ORDER BY mean_clv_12m DESC NULLS LAST, rfm_segment LIMIT 8"
        )
        .to_pylist()
    )
    withheld = (  # BG/NBD's dropout not identified by this history: P(alive) is NULL, and why (docs/clv.md)
        runtime.warehouse()
        .sql(
            "SELECT count(*)::VARCHAR || ' buyers: ' || p_alive_note AS why FROM profiles "
            "WHERE p_alive_note IS NOT NULL GROUP BY p_alive_note ORDER BY count(*) DESC"
        )
        .to_pylist()
    )
    return {
        "P(alive) withheld, and why (docs/clv.md)": withheld,
        "headline KPIs per month": headline,
        f"attribution of {journeys.paths.total_conversions:,.0f} orders with a touch in the "
        f"{journeys.lookback_days:g} days before (every model; orders credited)": attribution,
        "top CLV segments (RFM segment, predicted 12-month CLV)": segments,
    }


def summarize(runtime: Runtime) -> dict[str, list[dict[str, Any]]]:
    """The demo's summary, read back from the warehouse with SQL."""
    warehouse = runtime.warehouse()
    return {name: warehouse.sql(query).to_pylist() for name, query in SUMMARY_QUERIES.items()}


def _shown(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, Decimal)) and value == int(value):
        return f"{int(value):,}"
    if isinstance(value, (float, Decimal)):
        return f"{float(value):,.2f}"
    return str(value)


def print_summary(console: Console, result: DemoResult) -> None:
    """Print the summary tables (fitted to the console's width by the shells' renderer), the ground truth's
    size and the timings."""
    from omniweave.shells.render import grid, print_grid

    m = result.manifest
    for name, rows in {**result.summary, **result.report, "segments": result.segments}.items():
        if not rows:
            continue
        print_grid(console, grid(list(rows[0]), [[_shown(v) for v in row.values()] for row in rows[:30]], title=name))
    console.print(
        f"ground truth: {m['customers']:,} people, {m['identities']:,} identifiers "
        f"({result.folder / 'ground_truth'}); true revenue online {m['revenue_online']:,.2f}, "
        f"store {m['revenue_store']:,.2f} GBP"
    )
    if result.insights is not None:
        console.print(result.insights.describe(), highlight=False, markup=False)
    if result.journeys is not None:
        from omniweave.demo.journeys import describe

        describe(result.journeys, console)
    if result.timings:
        console.print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()))
