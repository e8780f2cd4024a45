"""The whole pipeline at a retailer's size: seconds and peak memory per stage, and one new day.

Generates (once; cached under --data by size and seed) the event log of bench/profiles.py — N persons
(default 1,000,000) and their events (default 30 per person) — then, on a fresh working copy of it
(the cached files hard-linked, so nothing a stage writes reaches the cache), runs each stage through
the command line in its own process, as a user would:

  resolve            omniweave resolve               (identities from the raw log: the first, full run)
  profiles           omniweave profiles build
  segments           omniweave segments evaluate     (the built-in library)
  kpis               omniweave kpis --period month
  attribution paths  omniweave attribution --model markov   (paths read from the event log)
  media-mix fit      omniweave mmm fit               (when the log has spend data; else a line says why it is skipped)

then a check of `resolve` against the reference on a sample: the log's first `--sample-days` days (default 7)
resolved by the array path and by the object path (`method="objects"`), each in its own process, must give the
same `identities` row for row; and then one new day (an average day of the generator's events after the log's last day, by returning and new
persons; resolve takes it as a daily increment) through resolve, profiles and segments. For each it prints wall
seconds, CPU seconds (user + system, the stage's own and its
children's: steadier than wall time on a shared machine), the process's peak RSS (`wait4`) and the load
average when it ended, against the
targets of issue 27: resolve ≤ 120 s, profiles ≤ 30 s, every stage ≤ 8 GB peak (profiles ≤ 4 GB), the
whole pipeline ≤ 5 min, one new day ≤ 30 s. Stages run under `--memory-limit` (the `memory_limit`
setting, OMNIWEAVE_MEMORY_LIMIT).

Then an hour of trickle through `omniweave serve` (`--trickle-seconds`, default 3600; 0 skips it;
`--trickle-only` runs just this part): events sent one by one at `--trickle-rate` per second to a fresh
home, the loader writing a file every half second, the server compacting the day as it goes (every
`compaction_interval_seconds`, files older than `compaction_min_age_seconds`: 300 s each for an hour,
a twelfth of a shorter trickle). It prints the files the loader wrote for the day and the files a reader
lists at the end, the same query (count, distinct ids, distinct users) timed over both, which must both
count every acknowledged event once, and the files left after a final `omniweave log compact`.

    python bench/pipeline.py [--persons 1000000] [--events 30000000] [--seed 1] [--data DIR]
                             [--memory-limit 6GB] [--skip-day] [--sample-days 7] [--trickle-seconds 3600]
                             [--trickle-rate 5] [--trickle-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
FORMAT = 1  # bump when the cached layout changes
GB = 1024**3

STAGES: list[tuple[str, list[str], float | None, float]] = [
    # name, command, target seconds (None: only the total counts), target peak GB
    ("resolve", ["resolve"], 120.0, 8.0),
    ("profiles", ["profiles", "build"], 30.0, 4.0),
    ("segments", ["segments", "evaluate", "--format", "json"], None, 8.0),
    ("kpis", ["kpis", "--period", "month", "--format", "json"], None, 8.0),
    ("attribution paths", ["attribution", "--model", "markov", "--format", "json"], None, 8.0),
    ("media-mix fit", ["mmm", "fit", "--format", "json"], None, 8.0),
]
NEEDS_SPEND = ("media-mix fit",)  # stages that fit on the `spend` dataset: skipped (with the reason) without it
DAY_STAGES = ("resolve", "profiles", "segments")


def _generate(folder: Path, persons: int, events: int, seed: int) -> None:
    """The event log of bench/profiles.py, in a child process (its memory is not the stages')."""
    code = (
        "import sys, json, time; from pathlib import Path; "
        f"sys.path[:0] = [{str(SRC)!r}, {str(HERE)!r}]; import profiles; t = time.perf_counter(); "
        f"e, i = profiles.generate(Path({str(folder)!r}), {persons}, {events}, {seed}); "
        f"Path({str(folder / 'generated.json')!r}).write_text(json.dumps({{'events': e, 'seconds': time.perf_counter() - t}}))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _working_copy(cache: Path, work: Path) -> None:
    """`work` with the cached events hard-linked (fresh: no identities, profiles or state)."""
    shutil.rmtree(work, ignore_errors=True)
    (work / "warehouse").mkdir(parents=True)
    for dataset in ("events", "spend"):
        if (cache / "warehouse" / dataset).exists():
            shutil.copytree(cache / "warehouse" / dataset, work / "warehouse" / dataset, copy_function=os.link)


def _run(home: Path, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """One stage in its own process: wall seconds, peak RSS (bytes), exit status, the last lines it printed."""
    command = [str(Path(sys.executable).parent / "omniweave"), "--home", str(home), *args]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    return {
        "seconds": seconds,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak": usage.ru_maxrss * 1024,
        "code": proc.returncode,
        "tail": text[-600:],
    }


def _new_day(home: Path, persons: int, events: int, seed: int) -> tuple[int, int, int]:
    """Append one new day of generated events after the log's last day: an average day's events (the log's
    events / 365), drawn by activity among the log's persons and a year's growth of new ones spread over a
    day (persons / 365 new persons, numbered after the others: their identifiers are new), by the
    generator of bench/profiles.py. Returns (events, events of new persons, new persons who came)."""
    import numpy as np

    sys.path[:0] = [str(SRC), str(HERE)]
    import profiles

    from omniweave.runtime import Runtime
    from omniweave.settings import Settings

    fresh = max(1, persons // profiles.DAYS)
    people = profiles.make_people(persons, seed)
    extra = profiles.make_people(fresh, seed + 1_000_003)
    people = {k: np.concatenate([v, extra[k]]) for k, v in people.items()}
    rng = np.random.default_rng([seed, 2, profiles.DAYS])
    # two days after the log's last day (the generator spreads a day's events up to a day either side), so
    # the day sorts after every event of the log; message ids and till receipts numbered after the log's
    chunk = profiles.Chunk(people, rng, profiles.DAYS + 2, 1, 10**12, 10**12)
    drawn: list[np.ndarray] = []
    draw = chunk.persons

    def persons_drawn(count: int, only: str | None = None) -> np.ndarray:
        who = draw(count, only)
        drawn.append(who)
        return who

    chunk.persons = persons_drawn  # type: ignore[method-assign]
    share = np.asarray(list(profiles.MIX.values()))
    counts = rng.multinomial(max(1, events // profiles.DAYS), share / share.sum())
    for kind, count in zip(profiles.MIX, counts, strict=True):
        chunk.build(kind, int(count))
    table = chunk.table()
    Runtime(Settings(home=str(home))).log.append("events", table, "bench-new-day")
    who = np.concatenate(drawn) if drawn else np.zeros(0, np.int64)
    newcomers = who[who >= persons]
    return int(table.num_rows), int(newcomers.size), int(np.unique(newcomers).size)


_SAMPLE_CODE = """
import json, sys, time
from omniweave.identity.service.resolve import resolve
from omniweave.runtime import Runtime
from omniweave.settings import Settings
home, method = sys.argv[1], sys.argv[2]
runtime = Runtime(Settings(home=home))
t = time.perf_counter()
s = resolve(runtime, method=method)
rows = runtime.warehouse().table("identities").select("kind", "value", "person_id").to_pyarrow()
rows = sorted(zip(*(rows.column(c).to_pylist() for c in ("kind", "value", "person_id")), strict=True))
print(json.dumps({"seconds": time.perf_counter() - t, "events": s.events, "persons": s.persons, "rows": rows}))
"""


def _sample_check(cache: Path, work: Path, days: int, env: dict[str, str]) -> None:
    """The log's first `days` day partitions resolved by the array path (what `resolve` runs at this size) and by
    the object path (the `Stitcher` on Python objects, the reference), each in its own process: the same persons,
    identifier for identifier."""
    folders = sorted((cache / "warehouse" / "events").glob("date=*"))[:days]
    results = {}
    for method in ("arrays", "objects"):
        home = work.parent / f"{work.name}-sample-{method}"
        shutil.rmtree(home, ignore_errors=True)
        for folder in folders:
            shutil.copytree(folder, home / "warehouse" / "events" / folder.name, copy_function=os.link)
        out = subprocess.run(
            [sys.executable, "-c", _SAMPLE_CODE, str(home), method], env=env, capture_output=True, text=True
        )
        shutil.rmtree(home, ignore_errors=True)
        if out.returncode:
            print(f"sample check ({method}) failed: {out.stderr.strip()[-400:]}")
            return
        results[method] = json.loads(out.stdout.strip().splitlines()[-1])
    a, o = results["arrays"], results["objects"]
    same = a["rows"] == o["rows"]
    print(
        f"sample check: the log's first {days} days, {a['events']:,} events: array path {a['persons']:,} persons"
        f" in {a['seconds']:.1f} s, object path {o['persons']:,} persons in {o['seconds']:.1f} s;"
        f" identities ({len(a['rows']):,} rows: kind, value, person id) the same: {'yes' if same else 'NO'}"
    )


def _timed_query(files: list[str]) -> tuple[float, tuple[int, int, int]]:
    """The best of fifteen runs of one query over exactly `files` (opening each file, as a reader does), and its
    answer."""
    import duckdb

    best, answer = float("inf"), (0, 0, 0)
    sql = "SELECT count(*), count(DISTINCT message_id), count(DISTINCT user_id) FROM read_parquet($files)"
    con = duckdb.connect()
    con.execute("SET enable_object_cache = false")  # every run reads the footers again
    for _ in range(15):
        started = time.perf_counter()
        row = con.execute(sql, {"files": files}).fetchone()
        best = min(best, time.perf_counter() - started)
        assert row is not None
        answer = (int(row[0]), int(row[1]), int(row[2]))
    con.close()
    return best, answer


def _trickle(seconds: float, rate: float, data: Path) -> None:
    """Events one by one through `omniweave serve` for `seconds`, the server compacting as it goes; prints the
    day's files and a query's time before and after compaction (see the module docstring)."""
    import random
    import signal
    import socket

    import httpx

    sys.path.insert(0, str(SRC))
    from omniweave.runtime import Runtime
    from omniweave.settings import Settings
    from omniweave.storage.compaction import batch_range

    home = data / f"trickle-{os.getpid()}"
    shutil.rmtree(home, ignore_errors=True)
    every = max(5.0, min(300.0, seconds / 12))
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "OMNIWEAVE_HOME": str(home),
        "OMNIWEAVE_COMPACTION_INTERVAL_SECONDS": str(every),
        "OMNIWEAVE_COMPACTION_MIN_AGE_SECONDS": str(every),
        # the loader's own files stay on disk (unlisted) until the end, to time the query over them
        "OMNIWEAVE_COMPACTION_GRACE_SECONDS": str(seconds + 3600),
    }
    cli = str(Path(sys.executable).parent / "omniweave")
    made = subprocess.run([cli, "keys", "create", "--source", "trickle"], env=env, capture_output=True, text=True)
    key = made.stdout.strip().splitlines()[-1].strip()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [cli, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    acknowledged = 0
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        chance = random.Random(27)
        started = time.monotonic()
        with httpx.Client(base_url=base, auth=(key, ""), timeout=10) as client:
            i = 0
            while time.monotonic() - started < seconds:
                event = {
                    "type": "track",
                    "event": chance.choice(["Page Viewed", "Product Viewed", "Product Added"]),
                    "userId": f"trickle-user-{chance.randrange(500)}",
                    "messageId": f"trickle-{i}",
                }
                i += 1
                if client.post("/v1/track", json=event).status_code == 200:
                    acknowledged += 1
                time.sleep(max(0.0, started + i / rate - time.monotonic()))
        runtime = Runtime(Settings(home=str(home)))
        deadline = time.monotonic() + 120
        while runtime.store.consumer("loader").position < runtime.store.max_seq() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=120)
    on_disk = runtime.log.files("events", superseded=True)
    listed = runtime.log.files("events")
    spans = [(batch_range(p) or (0, 0), p) for p in on_disk]
    loader = [p for (lo, hi), p in spans if sum(1 for (a, b), _ in spans if lo <= a and b <= hi) == 1]
    days = sorted({Path(p).parent.name.removeprefix("date=") for p in on_disk})
    print(
        f"trickle: {acknowledged:,} events acknowledged over {seconds:.0f} s through serve ({rate:g}/s, one per"
        f" request); loader every 0.5 s; compaction every {every:g} s of files older than {every:g} s; day {', '.join(days)}"
    )
    before_s, before = _timed_query(loader)
    after_s, after = _timed_query(listed)
    print(
        f"  before compaction: {len(loader):>6,} files (the loader's)   query {before_s * 1000:8.1f} ms   {before[0]:,} events"
    )
    print(
        f"  after (live, serve): {len(listed):>4,} files listed          query {after_s * 1000:8.1f} ms   {after[0]:,} events"
    )
    final = subprocess.run(
        [cli, "log", "compact", "--grace", "0", "--format", "json"],
        env={**env, "OMNIWEAVE_COMPACTION_MIN_AGE_SECONDS": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(final.stdout)
    remaining = runtime.log.files("events", superseded=True)
    last_s, last = _timed_query(runtime.log.files("events"))
    print(
        f"  after `log compact`: {len(remaining):>4,} files on disk          query {last_s * 1000:8.1f} ms   {last[0]:,} events"
        f" ({report['merged']} merged)"
    )
    same = before == after == last and before[0] == before[1] == acknowledged
    print(f"  every acknowledged event once in each: {'yes' if same else 'NO'} {before} {after} {last}")
    runtime.close()
    shutil.rmtree(home, ignore_errors=True)


def _row(name: str, r: dict[str, Any], target_s: float | None, target_gb: float) -> str:
    ok_s = target_s is None or r["seconds"] <= target_s
    ok_m = r["peak"] <= target_gb * GB
    verdict = "ok" if r["code"] == 0 and ok_s and ok_m else ("FAILED" if r["code"] else "over target")
    target = (f"≤ {target_s:.0f} s, " if target_s else "") + f"≤ {target_gb:.0f} GB"
    return (
        f"{name:<20} {r['seconds']:>9.1f} {r['cpu']:>8.1f} {r['peak'] / GB:>9.2f} {os.getloadavg()[0]:>6.1f}"
        f" {target:>18}  {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=None, help="default: 30 per person")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--data", default=os.environ.get("OMNIWEAVE_BENCH_CACHE", str(Path(tempfile.gettempdir()) / "omniweave-bench"))
    )
    parser.add_argument("--memory-limit", default="6GB", help="the memory_limit setting of every stage")
    parser.add_argument("--skip-day", action="store_true", help="skip the new-day run")
    parser.add_argument(
        "--sample-days",
        type=int,
        default=7,
        help="resolve the log's first N days by the array and the object path and compare the persons (0: skip)",
    )
    parser.add_argument("--trickle-seconds", type=float, default=3600.0, help="the trickle through serve (0: skip)")
    parser.add_argument("--trickle-rate", type=float, default=5.0, help="events per second in the trickle")
    parser.add_argument("--trickle-only", action="store_true", help="run only the trickle through serve")
    args = parser.parse_args()
    if args.trickle_only:
        _trickle(args.trickle_seconds, args.trickle_rate, Path(args.data))
        return
    events = args.events or 30 * args.persons
    cache = Path(args.data) / f"pipeline-v{FORMAT}-{args.persons}p-{events}e-s{args.seed}"
    done = cache / "generated.json"
    if not done.exists():
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        _generate(cache, args.persons, events, args.seed)
        meta = json.loads(done.read_text())
        print(
            f"event log: {meta['events']:,} events for {args.persons:,} persons, generated in {meta['seconds']:.0f} s"
        )
    else:
        print(f"event log: {json.loads(done.read_text())['events']:,} events for {args.persons:,} persons (cached)")
    work = Path(args.data) / f"pipeline-work-{os.getpid()}"
    _working_copy(cache, work)
    env = {**os.environ, "OMNIWEAVE_MEMORY_LIMIT": args.memory_limit, "PYTHONPATH": str(SRC)}
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cpus, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / GB:.0f} GB RAM "
        f"(shared), load avg {os.getloadavg()[0]:.1f}; memory_limit {args.memory_limit}; each stage in its own process"
    )
    print(f"{'stage':<20} {'seconds':>9} {'cpu s':>8} {'peak GB':>9} {'load':>6} {'target':>18}")
    total, cpu, worst = 0.0, 0.0, 0
    try:
        has_spend = any((work / "warehouse" / "spend").rglob("*.parquet"))
        for name, command, target_s, target_gb in STAGES:
            if name in NEEDS_SPEND and not has_spend:
                print(
                    f"{name:<20} {'—':>9} {'—':>8} {'—':>9} {'':>6} {'':>18}  skipped: the generated log has no"
                    " spend data (bench/profiles.py writes events only)"
                )
                continue
            r = _run(work, command, env)
            total += r["seconds"]
            cpu += r["cpu"]
            worst = max(worst, r["peak"])
            print(_row(name, r, target_s, target_gb), flush=True)
            if r["code"]:
                print("  " + r["tail"].strip().replace("\n", "\n  "))
        print(
            f"{'pipeline':<20} {total:>9.1f} {cpu:>8.1f} {worst / GB:>9.2f} {'':>6} {'≤ 300 s, ≤ 8 GB':>18}  "
            + ("ok" if total <= 300 and worst <= 8 * GB else "over target")
        )
        if args.sample_days:
            _sample_check(cache, work, args.sample_days, env)
        if not args.skip_day:
            added, by_new, newcomers = _new_day(work, args.persons, events, args.seed)
            print(
                f"one new day: {added:,} events (an average day, generated after the log's last day), "
                f"{newcomers:,} new persons drawn for {by_new:,} of them, the rest by returning persons"
            )
            day_total, day_cpu = 0.0, 0.0
            for name, command, _, target_gb in STAGES:
                if name in DAY_STAGES:
                    r = _run(work, command, env)
                    day_total += r["seconds"]
                    day_cpu += r["cpu"]
                    print(_row(f"  {name}", r, None, target_gb), flush=True)
                    if r["code"]:
                        print("  " + r["tail"].strip().replace("\n", "\n  "))
            print(
                f"{'  new day':<20} {day_total:>9.1f} {day_cpu:>8.1f} {'':>9} {'':>6} {'≤ 30 s':>18}  "
                + ("ok" if day_total <= 30 else "over target")
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.trickle_seconds > 0:
        _trickle(args.trickle_seconds, args.trickle_rate, Path(args.data))


if __name__ == "__main__":
    main()
