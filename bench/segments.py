"""Segment evaluation benchmark: 20 segments over the profile benchmark's world, next to hand-written DuckDB SQL.

Uses the world `bench/profiles.py` generates and caches (default 1,000,000 persons / 30,000,000
events; run that first, or this runs it), with its `profiles` built. Then, each in a fresh process:

  - omniweave: `Compiler` over the warehouse (every behaviour condition counted once, from the day
    partitions the windows reach, then one pass over the profiles with a column per segment), the
    20 segments' members as sorted lists of person ids;
  - hand-written SQL: the same 20 audiences as DuckDB SQL over the same Parquet files (the events
    attributed to persons once, in a temporary table, then one query per segment).

Both must select the same persons for every segment (checked). Target (issue 4): ≤ 10 s and
≤ 1.3 × the hand-written SQL.

Then the incremental update for one new day, with `evaluate_segments` (members, segment_members,
change events and the kept counts written), on hard-linked copies of the world: the log without
its last day is evaluated in full; the last day's files are added; then, each in a fresh process
on its own copy, the evaluation carrying the kept counts forward and the evaluation counting
everything afresh (`incremental=False`), which must give the same members and changes.

Then the near-real-time path on the incremental copy (after its evaluation): the real collector
(`omniweave serve`) and `omniweave segments follow --interval 0.2` run as their own processes; the
follower's start (loading the kept counts, members, traits and identities of 1 M persons) is timed
to its first line, then `--live-events` (default 30) `Store Event Attended` events for persons not
in `event_attendees`, each for a different person, are posted to the collector one at a time; the
latency of each is from the collector's answer to its `Segment Entered` being in the inbox (this
process polls the inbox every 10 ms).

    python bench/segments.py [--persons 1000000] [--events 30000000] [--seed 1] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # bench/_server.py

# the hand-written reference SQL (the built-in library and ten extra audiences) is shared with the tests
sys.path.insert(0, str(ROOT))
from tests.segments.reference_sql import (  # noqa: E402
    BUILTIN_SQL,
    EXTRA_SEGMENTS,
    EXTRA_SQL,
    LOOKBACK_DAYS,
    PE_EVENTS,
    open_reference,
    reference_members,
)

SQL = {**BUILTIN_SQL, **EXTRA_SQL}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_ours(home: str) -> dict[str, Any]:
    segments = _segments()
    from omniweave.runtime import Runtime
    from omniweave.segments.service.evaluate import compiler_for
    from omniweave.settings import Settings

    runtime = Runtime(Settings(home=home))
    cpu, started = _cpu(), time.perf_counter()
    compiler = compiler_for(runtime, segments)
    compiler.prepare(segments)
    found = compiler.all_members(sorted(segments))  # what evaluate_segments does
    members = {sid: sorted(found[sid].to_pylist()) for sid in sorted(segments)}
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu": _cpu() - cpu,
        "peak_mb": _peak_mb(),
        "now": compiler.now.isoformat(),
        "sizes": {k: len(v) for k, v in members.items()},
        "members": {k: hash(tuple(v)) for k, v in members.items()},
    }


def _segments() -> dict[str, Any]:
    sys.path.insert(0, str(SRC))
    from omniweave.segments.language import parse_segment
    from omniweave.segments.service.evaluate import builtin_segments

    return {**builtin_segments(), **{k: parse_segment({"id": k, "where": v}) for k, v in EXTRA_SEGMENTS.items()}}


def run_evaluate(home: str, incremental: bool) -> dict[str, Any]:
    """`evaluate_segments` as the CLI runs it (as of the log's latest event), timed end to end."""
    segments = _segments()
    from omniweave.runtime import Runtime
    from omniweave.segments.service.evaluate import evaluate_segments
    from omniweave.settings import Settings

    runtime = Runtime(Settings(home=home))
    cpu, started = _cpu(), time.perf_counter()
    summary = evaluate_segments(runtime, segments, incremental=incremental)
    seconds = time.perf_counter() - started
    rows = runtime.warehouse().table("segment_members").to_pyarrow().to_pylist()
    members: dict[str, list[str]] = {}
    for row in rows:
        members.setdefault(row["segment_id"], []).append(row["person_id"])
    return {
        "seconds": seconds,
        "cpu": _cpu() - cpu,
        "peak_mb": _peak_mb(),
        "now": summary.now.isoformat(),
        "counting": summary.counting,
        "changes": {r.segment_id: [r.entered, r.exited] for r in summary.results},
        "members": {k: hash(tuple(sorted(v))) for k, v in members.items()},
        "written": summary.events_written,
    }


def _link_copy(source: Path, target: Path, skip_day: str | None = None) -> list[Path]:
    """Hard-link every Parquet file of `source` into `target` (the writers replace files by renames, so the
    copies never share a change) and copy the others (a SQLite file is written in place); files of the events
    partition `date=skip_day` are left out and returned."""
    import shutil

    skipped = []
    for path in sorted(source.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(source)
        if skip_day and f"date={skip_day}" in rel.parts and "events" in rel.parts:
            skipped.append(rel)
            continue
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".parquet":
            os.link(path, target / rel)
        else:
            shutil.copy2(path, target / rel)
    return skipped


def _rss_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def live(home: Path, count: int) -> None:
    """The collector and `segments follow` on `home` (evaluated), `count` events through HTTP, latencies."""
    import base64
    import threading

    import duckdb
    import httpx
    import orjson
    from _server import Server

    sys.path.insert(0, str(SRC))
    from omniweave.events.normalize import format_timestamp
    from omniweave.runtime import Runtime
    from omniweave.segments.service import counts as SC
    from omniweave.settings import Settings

    wh = home / "warehouse"
    con = duckdb.connect()
    users = [
        r[0]
        for r in con.execute(f"""
        SELECT min(i.value) FROM read_parquet('{wh}/identities/**/*.parquet') i
        WHERE i.kind = 'user_id' AND i.person_id NOT IN (
            SELECT person_id FROM read_parquet('{wh}/segment_members/**/*.parquet') WHERE segment_id = 'event_attendees')
        GROUP BY i.person_id ORDER BY hash(i.person_id) LIMIT {count}""").fetchall()
    ]
    con.close()
    runtime = Runtime(Settings(home=str(home)))
    base = SC.read_state(runtime.log).now
    server = Server(home, {"OMNIWEAVE_LOADER_INTERVAL_SECONDS": "3600", "PYTHONUNBUFFERED": "1"})
    with tempfile.TemporaryFile("w+") as errors:
        started = time.perf_counter()
        follower = subprocess.Popen(
            [sys.executable, "-m", "omniweave", "segments", "follow", "--interval", "0.2"],
            env=server.env,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        ready = threading.Event()

        def read_out() -> None:
            for _ in follower.stdout:  # type: ignore[union-attr]
                ready.set()

        threading.Thread(target=read_out, daemon=True).start()
        try:
            while not ready.wait(0.5):  # its first line says it follows
                if follower.poll() is not None:
                    errors.seek(0)
                    raise RuntimeError(f"segments follow exited: {errors.read()[-2000:]}")
            startup = time.perf_counter() - started
            auth = {"Authorization": "Basic " + base64.b64encode(f"{server.write_key}:".encode()).decode()}
            position = runtime.store.max_seq()
            latencies: list[float] = []
            for n, user in enumerate(users):
                mid = f"bench-live-{n}"
                event = {
                    "type": "track",
                    "event": "Store Event Attended",
                    "userId": user,
                    "messageId": mid,
                    "timestamp": format_timestamp(base + timedelta(minutes=n + 1)),
                    "properties": {"store_id": "S1"},
                }
                answer = httpx.post(f"{server.base_url}/v1/track", json=event, headers=auth, timeout=10)
                answer.raise_for_status()
                accepted = time.perf_counter()
                deadline, found = accepted + 60, False
                while not found and time.perf_counter() < deadline:
                    for row in runtime.store.read(after=position):
                        position = row.seq
                        payload = orjson.loads(row.payload)
                        if payload.get("event") == "Segment Entered" and payload["properties"].get("cause") == mid:
                            found = True
                    if not found:
                        time.sleep(0.01)
                latencies.append(time.perf_counter() - accepted if found else float("inf"))
            follower_mb = _rss_peak_mb(follower.pid)
        finally:
            follower.terminate()
            follower.wait(timeout=60)
            server.stop()
            runtime.close()
    done = sorted(latencies)
    print(
        f"\nnear real time: the collector and `segments follow` on the incremental copy; {len(users)} events posted "
        f"one at a time, each making a person enter event_attendees"
    )
    print(
        f"follower start (counts, members, traits and identities loaded): {startup:.1f} s, peak RSS "
        f"{follower_mb:,.0f} MB"
    )
    print(
        f"latency, collector's answer to Segment Entered in the inbox: median {statistics.median(done):.2f} s, "
        f"p90 {done[int(0.9 * (len(done) - 1))]:.2f} s, max {done[-1]:.2f} s; "
        f"{sum(1 for x in done if x != float('inf'))} of {len(done)} seen within 60 s"
    )


def incremental(home: Path, child: Any, live_events: int = 0) -> None:
    import shutil

    work = Path(tempfile.mkdtemp(prefix="omniweave-segments-bench-"))
    try:
        days = sorted(p.name.split("=", 1)[1] for p in (home / "warehouse" / "events").glob("date=*"))
        last = days[-1]
        before, inc, full = work / "before", work / "incremental", work / "full"
        held = _link_copy(home, before, skip_day=last)
        for name in ("segment_state", "segment_members"):
            shutil.rmtree(before / "warehouse" / name, ignore_errors=True)
        first = child("--evaluate", str(before), "--full")
        for rel in held:  # the new day arrives
            (before / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(home / rel, before / rel)
        _link_copy(before, inc)
        _link_copy(before, full)
        shutil.rmtree(before)
        step = child("--evaluate", str(inc))
        again = child("--evaluate", str(full), "--full")
        shutil.rmtree(full)
        report_incremental(held, last, first, step, again)
        if live_events:
            live(inc, live_events)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report_incremental(
    held: list[Path], last: str, first: dict[str, Any], step: dict[str, Any], again: dict[str, Any]
) -> None:
    events = sum(1 for _ in held)
    print(
        f"\nincremental update: the log without its last day ({last}) evaluated in full, then that day's "
        f"{events} file(s) added"
    )
    print(f"{'evaluate_segments':<34} {'seconds':>8} {'cpu s':>8} {'peak MB':>9}")
    for name, r in (
        ("full, without the last day", first),
        ("incremental, the new day", step),
        ("full again, with the new day", again),
    ):
        print(f"{name:<34} {r['seconds']:>8.2f} {r['cpu']:>8.1f} {r['peak_mb']:>9,.0f}")
    print(f"incremental: {step['counting']}")
    print(f"ratio: {step['seconds'] / again['seconds']:.2f} × the full evaluation of the same log")
    same = step["members"] == again["members"] and step["changes"] == again["changes"]
    print(
        f"same members and changes as the full evaluation: {'yes' if same else 'NO'}; "
        f"{sum(sum(c) for c in step['changes'].values()):,} changes, {step['written']:,} events written"
    )


def run_sql(home: str, now: str) -> dict[str, Any]:
    warehouse = Path(home) / "warehouse"
    cpu, started = _cpu(), time.perf_counter()
    urls = {name: str(warehouse / name) for name in ("profiles", "identities", "events")}
    con = open_reference(urls, now, events=PE_EVENTS, days=LOOKBACK_DAYS)
    members = {sid: reference_members(con, query, now) for sid, query in sorted(SQL.items())}
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu": _cpu() - cpu,
        "peak_mb": _peak_mb(),
        "sizes": {k: len(v) for k, v in members.items()},
        "members": {k: hash(tuple(v)) for k, v in members.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=30_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--cache", default=os.environ.get("OMNIWEAVE_BENCH_CACHE", str(Path(tempfile.gettempdir()) / "omniweave-bench"))
    )
    parser.add_argument("--ours", help=argparse.SUPPRESS)
    parser.add_argument("--sql", help=argparse.SUPPRESS)
    parser.add_argument("--now", help=argparse.SUPPRESS)
    parser.add_argument("--evaluate", help=argparse.SUPPRESS)
    parser.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each method, in turns")
    parser.add_argument("--skip-incremental", action="store_true", help="only the 20 segments against the SQL")
    parser.add_argument("--live-events", type=int, default=30, help="events for the near-real-time step (0 skips it)")
    args = parser.parse_args()
    if args.evaluate:
        print(json.dumps(run_evaluate(args.evaluate, incremental=not args.full)))
        return
    if args.ours:
        print(json.dumps(run_ours(args.ours)))
        return
    if args.sql:
        print(json.dumps(run_sql(args.sql, args.now)))
        return
    home = Path(args.cache) / f"profiles-v4-{args.persons}p-{args.events}e-s{args.seed}"
    if not (home / "warehouse" / "profiles").exists():
        subprocess.run(
            [
                sys.executable,
                str(BENCH / "profiles.py"),
                "--persons",
                str(args.persons),
                "--events",
                str(args.events),
                "--seed",
                str(args.seed),
                "--cache",
                args.cache,
            ],
            check=True,
        )
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the member lists are compared by hash across processes

    def child(*extra: str) -> dict[str, Any]:
        out = subprocess.run([sys.executable, __file__, *extra], check=True, capture_output=True, text=True, env=env)
        return json.loads(out.stdout.strip().splitlines()[-1])

    # in turns, each in a fresh process, after one run of ours that warms the page cache (the first run of the
    # bench reads the files from disk): every run is printed, and the ratio compares the medians
    runs: list[tuple[str, dict[str, Any]]] = []
    ours = child("--ours", str(home))
    runs.append(("omniweave, warm-up", ours))
    timed: dict[str, list[float]] = {"ours": [], "sql": []}
    for _ in range(args.repeat):
        sql = child("--sql", str(home), "--now", ours["now"])
        runs.append(("hand-written SQL", sql))
        timed["sql"].append(sql["seconds"])
        ours = child("--ours", str(home))
        runs.append(("omniweave (Ibis)", ours))
        timed["ours"].append(ours["seconds"])
    print(f"world: {home.name}; now = {ours['now']}; 20 segments")
    print(f"{'method (in run order)':<22} {'seconds':>8} {'cpu s':>8} {'peak MB':>9}")
    for name, r in runs:
        print(f"{name:<22} {r['seconds']:>8.2f} {r['cpu']:>8.1f} {r['peak_mb']:>9,.0f}")
    mine, theirs = statistics.median(timed["ours"]), statistics.median(timed["sql"])
    print(
        f"medians: omniweave {mine:.2f} s, hand-written SQL {theirs:.2f} s; ratio {mine / theirs:.2f} × "
        f"(target ≤ 1.3 and ≤ 10 s)"
    )
    same = [k for k in SQL if ours["members"][k] == sql["members"][k]]
    print(
        f"same members: {len(same)} of {len(SQL)} segments"
        + ("" if len(same) == len(SQL) else f"; differ: {sorted(set(SQL) - set(same))}")
    )
    print("sizes: " + ", ".join(f"{k} {ours['sizes'][k]:,}" for k in sorted(SQL)))
    if not args.skip_incremental:
        incremental(home, child, args.live_events)


if __name__ == "__main__":
    main()
