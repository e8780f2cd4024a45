"""Journey engine benchmark: prints each figure next to its target (issue 21).

    python bench/journeys.py [--persons 2000] [--database-url postgresql://...] [--workers N] [--only drain,...]
                             [--crash [--crash-minutes 5]] [--sqlite-synchronous normal]

1. step transitions per second: of the pure machine, and of the engine (runs claimed, walked through a
   branch, a split and a wait, and written back parked) (target >= 10,000/s);
2. sends per second end to end: runs entered through the API, walked by one worker, policy + ledger in
   one transaction, dispatched to a durable local sink (fsync per message) (target >= 1,000/s);
3. trigger-to-send latency at 500 events/s: `Product Added` events emitted at that rate, each group of
   events that came due during the previous commit committed together (as the collector's committer
   does), while a worker process runs; inbox receipt -> ledger row delivered (target p50 <= 1 s, p99 <= 5 s);
4. drain: `--persons` runs parked on a wait, worker processes started and warm (`--workers`, default 2
   on PostgreSQL, 1 on SQLite), then every run made due at one instant (as a 09:00 window opens): the
   time until every one is sent (target: 100,000 in <= 60 s);
5. `--crash`: `kill -9` of a worker every 2-4 s of work (counted from the ledger's first new row after the
   last kill, so a restart's start-up is not the whole pause) during a `--persons` run (2 workers on
   PostgreSQL, 1 on SQLite), for `--crash-minutes`, then one clean worker to finish: runs unfinished, ledger by status, sink lines and duplicates,
   persons without a ledger row, ledger delivered == sink.
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
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import orjson
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


def engine_transitions(rt: Runtime, persons: int) -> None:
    """Runs entered through the API, claimed by the stepper, walked through a branch, a split and a wait, and
    written back parked (state, history rows, lease released): transitions per second of `step`."""
    cond = Condition(traits=(PropertyFilter("first_name", "exists", True),))
    j = Journey(
        "bench_steps",
        Entry("api"),
        "b",
        steps(
            b=Branch((BranchArm(cond, "s"),), "s"),
            s=Split((("a", 50.0, "w"), ("b", 50.0, "w"))),
            w=Wait(86400, "x"),
            x=Exit("done"),
        ),
    )
    publish(rt, j)
    e = JourneyEngine(rt)
    e.enter_many("bench_steps", [f"P{i}" for i in range(1, persons + 1)], "t")
    e.directory.refresh()
    started = time.perf_counter()
    while e.step(500):
        pass
    seconds = time.perf_counter() - started
    with rt.store.engine.connect() as conn:
        parked = conn.execute(
            sa.select(sa.func.count())
            .select_from(journey_runs)
            .where(journey_runs.c.journey == "bench_steps", journey_runs.c.node == "w")
        ).scalar_one()
    print(
        f"step transitions/s (engine, {rt.store.dialect}) {e.stats.transitions / seconds:>10,.0f}   target >= 10,000"
        f"   ({e.stats.transitions:,} transitions, {parked:,} runs parked in {seconds:.1f} s)"
    )


def world(persons: int, url: str | None, synchronous: str | None = None) -> tuple[Runtime, Path, str | None]:
    """The bench's world, and the store's URL (with `synchronous`, a SQLite store opened with that level)."""
    home = Path(tempfile.mkdtemp(prefix="ow-bench-journeys-"))
    if synchronous and not url:
        url = f"sqlite:///{home / 'omniweave.db'}?synchronous={synchronous}"
    settings = Settings(home=str(home), database_url=url or "")
    runtime = Runtime(settings)
    started = time.perf_counter()
    build_world(runtime, persons)
    print(f"(world of {persons:,} persons built in {time.perf_counter() - started:.1f} s; store {url or 'sqlite'})")
    return runtime, home, url


def sends_per_second(rt: Runtime, persons: int, sink: Path) -> None:
    j = Journey(
        "bench_send",
        Entry("api"),
        "s",
        steps(s=Send("cart_reminder", "email", "x", message_class="transactional"), x=Exit()),
    )
    publish(rt, j)
    publish(rt, replace(j, name="bench_send_warm"))  # imports and channels opened before the clock starts
    JourneyEngine(rt).enter_many("bench_send_warm", [f"P{i}" for i in range(1, 21)], "b")
    work(rt, until_idle=True, sink=str(sink), idle_sleep=0.01)
    JourneyEngine(rt).enter_many("bench_send", [f"P{i}" for i in range(1, persons + 1)], "b")
    before = len(sink_keys(sink))
    started, cpu = time.perf_counter(), time.process_time()
    work(rt, until_idle=True, sink=str(sink), idle_sleep=0.01)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    sent = len(sink_keys(sink)) - before
    print(
        f"sends/s end to end ({sent:,} to the sink)  {sent / seconds:>10,.0f}   target >= 1,000"
        f"   (one worker, {rt.store.dialect}, sender thread; {seconds:.2f} s wall, {cpu:.2f} s CPU of this process;"
        f" {_load()})"
    )


def _load() -> str:
    """The machine's load average (1 and 5 minutes): a figure of a shared machine means little without it."""
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}"


class Workers:
    """Worker processes (`python -m omniweave.activate.service.journeys worker`) on the bench's home and store."""

    def __init__(self, home: Path, url: str | None, sink: Path, n: int, *extra: str):
        self.env = {**os.environ, "OMNIWEAVE_HOME": str(home)}
        if url:
            self.env["OMNIWEAVE_DATABASE_URL"] = url
        self.args = [
            sys.executable,
            "-m",
            "omniweave.activate.service.journeys",
            "worker",
            "--home",
            str(home),
            "--sink",
            str(sink),
            *extra,
        ]
        self.procs = [subprocess.Popen(self.args, env=self.env) for _ in range(n)]

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGKILL)
            p.wait()


def delivered(rt: Runtime, campaign: str) -> tuple[int, float | None]:
    """How many sends of `campaign` the ledger holds delivered, and when the last one was."""
    with rt.store.engine.connect() as conn:
        n, last = conn.execute(
            sa.select(sa.func.count(), sa.func.max(sends.c.updated_at)).where(
                sends.c.campaign == campaign, sends.c.status == "delivered"
            )
        ).one()
    return int(n), None if last is None else float(last)


def warm(rt: Runtime, name: str, persons: int) -> None:
    """Until the workers have sent a first message each way (imports, profiles read, channels open)."""
    j = Journey(
        name, Entry("api"), "s", steps(s=Send("cart_reminder", "email", "x", message_class="transactional"), x=Exit())
    )
    publish(rt, j)
    JourneyEngine(rt).enter_many(name, [f"P{i}" for i in range(1, persons + 1)], "w")
    deadline = time.monotonic() + 600
    while delivered(rt, name)[0] < persons and time.monotonic() < deadline:
        time.sleep(0.2)


def latency(rt: Runtime, home: Path, url: str | None, sink: Path, rate: int = 500, seconds: float = 10.0) -> None:
    """Events emitted at `rate` (the events that came due while the previous commit ran are committed together,
    as the collector's committer group-commits what arrived meanwhile) while a worker process runs."""
    j = Journey(
        "bench_latency",
        Entry("event", event="Product Added"),
        "s",
        steps(s=Send("cart_reminder", "email", "x", message_class="transactional"), x=Exit()),
        re_entry=ReEntry("always"),
    )
    publish(rt, j)
    workers = Workers(home, url, sink, 1)
    try:
        warm(rt, "bench_latency_warm", 20)
        total = int(rate * seconds)
        started = time.monotonic()
        emitted = commits = 0
        while emitted < total:
            due = min(total, int((time.monotonic() - started) * rate) + 1)
            if due <= emitted:
                time.sleep(max(0.0, started + emitted / rate - time.monotonic()))
                continue
            events = []
            for i in range(emitted, due):
                person = 1 + i % 1000
                events.append(
                    {
                        "type": "track",
                        "event": "Product Added",
                        "messageId": f"lat-{i}",
                        "userId": f"u{person}",
                        "timestamp": datetime.now(UTC).isoformat(),
                        "properties": {"cart_id": f"c{i}"},
                    }
                )
            emit(rt.store, "bench", events)
            emitted, commits = due, commits + 1
        took = time.monotonic() - started
        deadline = time.monotonic() + 120
        while delivered(rt, "bench_latency")[0] < total and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        workers.stop()
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
        f"trigger->send at {rate}/s ({len(lat):,} of {total:,} sent)  p50 {p50:>6.2f} s  p99 {p99:>6.2f} s"
        f"   target p50 <= 1 s, p99 <= 5 s   ({total / took:,.0f} events/s emitted in {commits:,} commits; {_load()})"
    )


def drain(rt: Runtime, home: Path, url: str | None, sink: Path, persons: int, workers: int) -> None:
    """Every run parked on a wait that ends at one instant (as a window step parks them all until the same
    local 09:00), the worker processes started and warm before it; the time from that instant until every
    one is sent. The runs are parked with a frozen clock, far enough ahead; once the workers are warm the
    instant is set 5 s ahead (each run's wake time and its wait's end, as parking then would have set them)."""
    park_wait = 3600.0
    j = Journey(
        "bench_nine",
        Entry("api"),
        "w",
        steps(w=Wait(park_wait, "s"), s=Send("cart_reminder", "email", "x", message_class="transactional"), x=Exit()),
    )
    publish(rt, j)
    parked_at = time.time()
    e = JourneyEngine(rt, clock=lambda: parked_at)  # every run waits until parked_at + park_wait
    e.enter_many("bench_nine", [f"P{i}" for i in range(1, persons + 1)], "n")
    while e.step(500):
        pass
    procs = Workers(home, url, sink, workers)
    try:
        warm(rt, "bench_nine_warm", 20 * workers)
        nine = time.time() + 5.0
        with rt.store.engine.begin() as conn:
            parked = conn.execute(
                sa.select(journey_runs.c.id, journey_runs.c.context).where(journey_runs.c.journey == "bench_nine")
            ).all()
            conn.execute(
                journey_runs.update()
                .where(journey_runs.c.id == sa.bindparam("rid"))
                .values(wake_at=nine, context=sa.bindparam("ctx")),
                [{"rid": rid, "ctx": orjson.dumps({**orjson.loads(ctx), "until": nine})} for rid, ctx in parked],
            )
        time.sleep(max(0.0, nine - time.time()))
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            sent, last = delivered(rt, "bench_nine")
            if sent >= persons:
                break
            time.sleep(0.5)
    finally:
        procs.stop()
    sent, last = delivered(rt, "bench_nine")
    seconds = (last or nine) - nine
    print(
        f"drain {persons:,} runs due at one 09:00  {seconds:>8.1f} s ({sent:,} sent; {sent / max(seconds, 1e-9):,.0f}"
        f" runs/s; {workers} worker(s), {rt.store.dialect}; {_load()})   target 100,000 in <= 60 s"
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

    def progress() -> int:
        with rt.store.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(sends)).scalar_one())

    while unfinished() and time.monotonic() - started < minutes * 60:
        # every 2-4 s of work: a restarted worker first starts up (imports, the directory), which under load
        # can take longer than the pause; the pause counts from the ledger's first new row since the last kill
        before, deadline = progress(), time.monotonic() + 120
        while progress() == before and time.monotonic() < deadline:
            time.sleep(0.2)
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
    rows = Ledger(rt.store.engine).rows()
    counts = Counter(r.status for r in rows)
    keys = sink_keys(sink)
    dup = sum(1 for n in Counter(keys).values() if n > 1)
    with rt.store.engine.connect() as conn:
        entered = {
            str(p)
            for (p,) in conn.execute(sa.select(journey_runs.c.person_id).where(journey_runs.c.journey == "bench_crash"))
        }
    sent_to = {str(r.person_id) for r in rows if r.campaign == "bench_crash"}
    delivered_keys = {r.key for r in rows if r.status == "delivered"}
    print(
        f"kill -9: {workers} worker(s), {kills} kills, {time.monotonic() - started:.0f} s; persons {persons:,}, "
        f"entered {len(entered):,}, without a ledger row {len(entered - sent_to):,}; runs unfinished "
        f"{unfinished()}; ledger {dict(counts)} (ambiguous {counts.get('ambiguous', 0)}); sink {len(keys):,} lines, "
        f"{len(set(keys)):,} keys ({dup} duplicates); ledger delivered == sink: {delivered_keys == set(keys)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--persons", type=int, default=2000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--crash", action="store_true")
    parser.add_argument("--crash-minutes", type=float, default=5.0)
    parser.add_argument(
        "--workers", type=int, default=None, help="drain: worker processes (2 on PostgreSQL, 1 on SQLite)"
    )
    parser.add_argument("--only", default="", help="comma-separated: steps, sends, latency, drain (default: all)")
    parser.add_argument(
        "--sqlite-synchronous",
        choices=("full", "normal"),
        default=None,
        help="SQLite: open the store with this synchronous level (default: the store's, FULL)",
    )
    args = parser.parse_args()
    transitions()
    rt, home, args.database_url = world(args.persons, args.database_url, args.sqlite_synchronous)
    sink = home / "sink.jsonl"
    try:
        if args.crash:
            crash(rt, home, args.persons, args.database_url, sink, args.crash_minutes)
            return
        workers = args.workers or (2 if rt.store.dialect == "postgresql" else 1)
        only = set(args.only.split(",")) if args.only else {"steps", "sends", "latency", "drain"}
        if "steps" in only:
            engine_transitions(rt, args.persons)
        if "sends" in only:
            sends_per_second(rt, args.persons, sink)
        if "latency" in only:
            latency(rt, home, args.database_url, sink)
        if "drain" in only:
            drain(rt, home, args.database_url, sink, args.persons, workers)
    finally:
        rt.close()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
