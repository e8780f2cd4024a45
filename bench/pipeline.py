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
  media-mix fit      skipped while there is no `omniweave mmm` command (a line says so)

and then one new day (the last day's events again, a day later, with new message ids) through resolve,
profiles and segments. For each it prints wall seconds and the process's peak RSS (`wait4`), against the
targets of issue 27: resolve ≤ 120 s, profiles ≤ 30 s, every stage ≤ 8 GB peak (profiles ≤ 4 GB), the
whole pipeline ≤ 5 min, one new day ≤ 30 s. Stages run under `--memory-limit` (the `memory_limit`
setting, OMNIWEAVE_MEMORY_LIMIT).

    python bench/pipeline.py [--persons 1000000] [--events 30000000] [--seed 1] [--data DIR]
                             [--memory-limit 6GB] [--skip-day]
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
]
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
    shutil.copytree(cache / "warehouse" / "events", work / "warehouse" / "events", copy_function=os.link)


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
    return {"seconds": seconds, "peak": usage.ru_maxrss * 1024, "code": proc.returncode, "tail": text[-600:]}


def _new_day(home: Path) -> int:
    """Append the last day's events again, one day later, with new message ids; returns how many."""
    sys.path.insert(0, str(SRC))
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from omniweave.runtime import Runtime
    from omniweave.settings import Settings
    from omniweave.storage.eventlog import EVENT_SCHEMA

    days = sorted((home / "warehouse" / "events").glob("date=*"))
    last = pa.concat_tables([pq.read_table(f) for f in sorted(days[-1].glob("*.parquet"))], promote_options="default")
    last = last.select([n for n in EVENT_SCHEMA.names if n in last.column_names])
    one_day = pa.scalar(86_400_000_000, pa.duration("us"))
    columns = {}
    for name in last.column_names:
        column = last.column(name)
        if name in ("timestamp", "original_timestamp", "sent_at", "received_at"):
            column = pc.add(column, one_day)
        elif name == "message_id":
            column = pc.binary_join_element_wise(column, pa.scalar("-next-day"), "")
        columns[name] = column
    table = pa.table(columns)
    Runtime(Settings(home=str(home))).log.append("events", table, "bench-next-day")
    return int(table.num_rows)


def _row(name: str, r: dict[str, Any], target_s: float | None, target_gb: float) -> str:
    ok_s = target_s is None or r["seconds"] <= target_s
    ok_m = r["peak"] <= target_gb * GB
    verdict = "ok" if r["code"] == 0 and ok_s and ok_m else ("FAILED" if r["code"] else "over target")
    target = (f"≤ {target_s:.0f} s, " if target_s else "") + f"≤ {target_gb:.0f} GB"
    return f"{name:<20} {r['seconds']:>9.1f} {r['peak'] / GB:>9.2f} {target:>18}  {verdict}"


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
    args = parser.parse_args()
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
    print(f"{'stage':<20} {'seconds':>9} {'peak GB':>9} {'target':>18}")
    total, worst = 0.0, 0
    try:
        for name, command, target_s, target_gb in STAGES:
            r = _run(work, command, env)
            total += r["seconds"]
            worst = max(worst, r["peak"])
            print(_row(name, r, target_s, target_gb), flush=True)
            if r["code"]:
                print("  " + r["tail"].strip().replace("\n", "\n  "))
        print(f"{'media-mix fit':<20} {'—':>9} {'—':>9} {'':>18}  skipped: no `omniweave mmm` command yet")
        print(
            f"{'pipeline':<20} {total:>9.1f} {worst / GB:>9.2f} {'≤ 300 s, ≤ 8 GB':>18}  "
            + ("ok" if total <= 300 and worst <= 8 * GB else "over target")
        )
        if not args.skip_day:
            added = _new_day(work)
            print(f"one new day: {added:,} events (the last day again, a day later)")
            day_total = 0.0
            for name, command, _, target_gb in STAGES:
                if name in DAY_STAGES:
                    r = _run(work, command, env)
                    day_total += r["seconds"]
                    print(_row(f"  {name}", r, None, target_gb), flush=True)
                    if r["code"]:
                        print("  " + r["tail"].strip().replace("\n", "\n  "))
            print(
                f"{'  new day':<20} {day_total:>9.1f} {'':>9} {'≤ 30 s':>18}  "
                + ("ok" if day_total <= 30 else "over target")
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
