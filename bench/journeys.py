"""Journey engine benchmark: prints each figure next to its target (issue 21).

    python bench/journeys.py [--persons 2000] [--database-url postgresql://...] [--crash]

1. step transitions per second of the pure machine (target >= 10,000/s);
2. sends per second end to end: runs entered through the API, walked by one worker, policy + ledger in
   one transaction, dispatched to a durable local sink (fsync per message) (target >= 1,000/s);
3. trigger-to-send latency at 500 events/s: `Product Added` events emitted at that rate while a worker
   runs; inbox receipt -> ledger row delivered (target p50 <= 1 s, p99 <= 5 s);
4. drain: `--persons` runs parked, then all due at the same instant (as a 09:00 window opens), time until every one is sent
   (target: 100,000 in <= 60 s; scale the figure by persons);
5. `--crash`: the kill -9 run (2 workers on PostgreSQL, 1 on SQLite): ledger count vs sink count.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omniweave.activate.journeys import machine as M  # noqa: E402
from omniweave.activate.journeys.model import (  # noqa: E402
    Branch,
    BranchArm,
    Condition,
    Entry,
    Exit,
    Journey,
    PropertyFilter,
    ReEntry,
    Send,
    Split,
    Step,
    Wait,
)
from omniweave.activate.service.journeys import JourneyEngine, publish, sink_keys, work  # noqa: E402
from omniweave.collect.emit import emit  # noqa: E402
from omniweave.runtime import Runtime  # noqa: E402
from omniweave.settings import Settings  # noqa: E402
from omniweave.storage.ops.ledger import Ledger  # noqa: E402
from omniweave.storage.ops.tables import inbox, sends  # noqa: E402
from omniweave.storage.ops.tables.journeys import journey_runs  # noqa: E402
from tests.activate.journeys.conftest import build_world  # noqa: E402


def steps(**actions: object) -> dict[str, Step]:
    return {k: Step(k, a) for k, a in actions.items()}  # type: ignore[arg-type]


def transitions() -> None:
    cond = Condition(traits=(PropertyFilter("lifetime_value", "gt", 500),))
    j = Journey(
        "bench",
        Entry("api"),
        "b",
        steps(
            b=Branch((BranchArm(cond, "s"),), "s"),
            s=Split((("a", 50.0, "w"), ("b", 50.0, "w"))),
            w=Wait(3600, "x"),
            x=Exit("done"),
        ),
    )
    facts = M.Facts(traits={"lifetime_value": 900})
    n, taken = 50_000, 0
    started = time.perf_counter()
    for i in range(n):
        taken += len(M.advance(j, M.RunState(f"r{i}", f"P{i}", "b", 0.0, {}), facts, 10.0).steps)
    rate = taken / (time.perf_counter() - started)
    print(f"step transitions/s (pure machine)    {rate:>10,.0f}   target >= 10,000")


def world(persons: int, url: str | None) -> tuple[Runtime, Path]:
    home = Path(tempfile.mkdtemp(prefix="ow-bench-journeys-"))
    settings = Settings(home=str(home), database_url=url or "")
    runtime = Runtime(settings)
    started = time.perf_counter()
    build_world(runtime, persons)
    print(f"(world of {persons:,} persons built in {time.perf_counter() - started:.1f} s)")
    return runtime, home


def sends_per_second(rt: Runtime, persons: int, sink: Path) -> None:
    j = Journey(
        "bench_send",
        Entry("api"),
        "s",
        steps(s=Send("cart_reminder", "email", "x", message_class="transactional"), x=Exit()),
    )
    publish(rt, j)
    JourneyEngine(rt).enter_many("bench_send", [f"P{i}" for i in range(1, persons + 1)], "b")
    started = time.perf_counter()
    work(rt, until_idle=True, sink=str(sink), idle_sleep=0.01)
    seconds = time.perf_counter() - started
    sent = len(sink_keys(sink))
    print(f"sends/s end to end ({sent:,} to the sink)  {sent / seconds:>10,.0f}   target >= 1,000")


def latency(rt: Runtime, sink: Path, rate: int = 500, seconds: float = 10.0) -> None:
    j = Journey(
        "bench_latency",
        Entry("event", event="Product Added"),
        "s",
        steps(s=Send("cart_reminder", "email", "x", message_class="transactional"), x=Exit()),
        re_entry=ReEntry("always"),
    )
    publish(rt, j)
    stop = threading.Event()
    worker = threading.Thread(
        target=work, kwargs={"runtime": rt, "sink": str(sink), "stop": stop.is_set, "idle_sleep": 0.01}
    )
    worker.start()
    total = int(rate * seconds)
    started = time.monotonic()
    for i in range(total):
        person = 1 + i % 1000
        at = datetime.now(UTC).isoformat()
        event = {
            "type": "track",
            "event": "Product Added",
            "messageId": f"lat-{i}",
            "userId": f"u{person}",
            "timestamp": at,
            "properties": {"cart_id": f"c{i}"},
        }
        emit(rt.store, "bench", [event])
        pause = started + (i + 1) / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with rt.store.engine.connect() as conn:
            done = conn.execute(
                sa.select(sa.func.count())
                .select_from(sends)
                .where(sends.c.campaign == "bench_latency", sends.c.status == "delivered")
            ).scalar_one()
        if done >= total:
            break
        time.sleep(0.2)
    stop.set()
    worker.join()
    with rt.store.engine.connect() as conn:
        received = dict(conn.execute(sa.select(inbox.c.message_id, inbox.c.received_at)).all())
        rows = conn.execute(
            sa.select(journey_runs.c.entry_key, sends.c.updated_at)
            .join(sends, sends.c.key == sa.literal("j:bench_latency:s:") + journey_runs.c.id)
            .where(journey_runs.c.journey == "bench_latency", sends.c.status == "delivered")
        ).all()
    lat = sorted(updated - received[key] for key, updated in rows if key in received)
    if not lat:
        print("latency: no sends")
        return
    p50, p99 = statistics.median(lat), lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(
        f"trigger->send at {rate}/s ({len(lat):,} sends)  p50 {p50:>6.2f} s  p99 {p99:>6.2f} s"
        "   target p50 <= 1 s, p99 <= 5 s"
    )


def drain(rt: Runtime, persons: int, sink: Path) -> None:
    """Every run parked on a wait (as a window step parks them all until the same local 09:00), then all due
    at one instant: the time until every one is sent."""
    j = Journey(
        "bench_nine",
        Entry("api"),
        "w",
        steps(w=Wait(1.0, "s"), s=Send("cart_reminder", "email", "x", message_class="transactional"), x=Exit()),
    )
    publish(rt, j)
    nine = time.time()
    e = JourneyEngine(rt, clock=lambda: nine)  # every run parks at the same instant: all due at nine + 1 s
    e.enter_many("bench_nine", [f"P{i}" for i in range(1, persons + 1)], "n")
    while e.step():
        pass
    time.sleep(max(0.0, nine + 1.0 - time.time()))
    before = len(sink_keys(sink))
    started = time.perf_counter()
    work(rt, until_idle=True, sink=str(sink), idle_sleep=0.01)
    seconds = time.perf_counter() - started
    sent = len(sink_keys(sink)) - before
    print(
        f"drain {persons:,} runs due at one 09:00  {seconds:>8.1f} s ({sent:,} sent; {persons / seconds:,.0f} runs/s)"
        f"   target 100,000 in <= 60 s"
    )


def crash(rt: Runtime, home: Path, persons: int, url: str | None, sink: Path, minutes: float) -> None:
    j = Journey(
        "bench_crash",
        Entry("api"),
        "s",
        steps(s=Send("cart_reminder", "email", "x", message_class="transactional"), x=Exit()),
    )
    publish(rt, j)
    JourneyEngine(rt).enter_many("bench_crash", [f"P{i}" for i in range(1, persons + 1)], "c")
    workers = 2 if url and url.startswith("postgresql") else 1
    env = {**os.environ, "OMNIWEAVE_HOME": str(home)}
    if url:
        env["OMNIWEAVE_DATABASE_URL"] = url
    args = [
        sys.executable,
        "-m",
        "omniweave.activate.service.journeys",
        "worker",
        "--home",
        str(home),
        "--sink",
        str(sink),
        "--lease",
        "5",
        "--batch",
        "100",
    ]
    procs = [subprocess.Popen(args, env=env) for _ in range(workers)]
    rng, kills, started = random.Random(1), 0, time.monotonic()

    def unfinished() -> int:
        with rt.store.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(journey_runs)
                    .where(journey_runs.c.status.in_(("active", "waiting")))
                ).scalar_one()
            )

    while unfinished() and time.monotonic() - started < minutes * 60:
        time.sleep(rng.uniform(2.0, 4.0))
        i = rng.randrange(len(procs))
        procs[i].send_signal(signal.SIGKILL)
        procs[i].wait()
        kills += 1
        procs[i] = subprocess.Popen(args, env=env)
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait()
    subprocess.run([*args, "--until-idle"], env=env, check=True)
    counts = Counter(r.status for r in Ledger(rt.store.engine).rows())
    keys = sink_keys(sink)
    dup = sum(1 for n in Counter(keys).values() if n > 1)
    print(
        f"kill -9: {workers} worker(s), {kills} kills, {time.monotonic() - started:.0f} s; runs unfinished "
        f"{unfinished()}; ledger {dict(counts)}; sink {len(keys):,} ({dup} duplicates); "
        f"delivered == sink: {counts.get('delivered', 0) == len(set(keys))}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--persons", type=int, default=2000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--crash", action="store_true")
    parser.add_argument("--crash-minutes", type=float, default=5.0)
    args = parser.parse_args()
    transitions()
    rt, home = world(args.persons, args.database_url)
    sink = home / "sink.jsonl"
    try:
        if args.crash:
            crash(rt, home, args.persons, args.database_url, sink, args.crash_minutes)
            return
        sends_per_second(rt, args.persons, sink)
        latency(rt, sink)
        drain(rt, args.persons, sink)
    finally:
        rt.close()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
