"""kill -9: worker processes killed every few seconds (for up to a minute) and restarted while 300 persons
walk a journey of two sends (the 100,000-person run is `bench/journeys.py --crash`); at the end every run has
ended, every send is in the ledger once, the durable sink holds each delivered send exactly once (ledger count
== sink count), and sends whose outcome is unknown are counted."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from omniweave.activate.journeys.model import Entry, Exit, Journey, Send, Step, Wait
from omniweave.activate.service.journeys import JourneyEngine, publish, send_key, sink_keys
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.storage.ops.ledger import Ledger
from omniweave.storage.ops.tables.journeys import journey_runs

from .conftest import build_world

PERSONS = 300
LEASE = 5.0
PAUSE = {"sqlite": (3.0, 7.0), "postgresql": (2.0, 4.0)}  # seconds between kills (PostgreSQL: one of 2 workers)


def two_sends() -> Journey:
    steps = {
        "first": Step("first", Send("cart_reminder", "email", "pause", message_class="transactional")),
        "pause": Step("pause", Wait(0.5, "second")),
        "second": Step("second", Send("cart_reminder", "email", "done", message_class="transactional")),
        "done": Step("done", Exit("done")),
    }
    return Journey(name="crash", entry=Entry("api"), start="first", steps=steps)


@pytest.fixture(scope="session")
def crowd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("journeys-crowd")
    runtime = Runtime(Settings(home=str(home)))
    build_world(runtime, PERSONS)
    runtime.close()
    for db in home.glob("omniweave.db*"):
        db.unlink()
    return home


def _start(home: Path, sink: Path, env: dict[str, str], until_idle: bool = False) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "omniweave.activate.service.journeys", "worker", "--home", str(home)]
    args += ["--sink", str(sink), "--lease", str(LEASE), "--batch", "50"] + (["--until-idle"] if until_idle else [])
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _unfinished(rt: Runtime) -> int:
    with rt.store.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(journey_runs)
                .where(journey_runs.c.status.in_(("active", "waiting")))
            ).scalar_one()
        )


@pytest.mark.parametrize(
    ("backend", "workers"), [("sqlite", 1), pytest.param("postgresql", 2, marks=pytest.mark.postgres)]
)
def test_kill_9_loses_no_person_and_sends_nothing_twice(
    backend: str, workers: int, crowd: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    home = tmp_path / "home"
    import shutil

    shutil.copytree(crowd, home)
    url = f"sqlite:///{home / 'ops.db'}" if backend == "sqlite" else str(request.getfixturevalue("postgres_url"))
    env = {**os.environ, "OMNIWEAVE_HOME": str(home), "OMNIWEAVE_DATABASE_URL": url}
    rt = Runtime(Settings(home=str(home), database_url=url))
    sink = tmp_path / "sink.jsonl"
    try:
        publish(rt, two_sends())
        persons = [f"P{i}" for i in range(1, PERSONS + 1)]
        assert JourneyEngine(rt).enter_many("crash", persons, "wave-1") == PERSONS
        rng = random.Random(7)
        procs = [_start(home, sink, env) for _ in range(workers)]
        kills = 0
        deadline = time.monotonic() + 60  # then one last worker finishes (suite time)
        while _unfinished(rt) and time.monotonic() < deadline:
            time.sleep(rng.uniform(*PAUSE[backend]))  # a worker needs ~2-4 s to import and start
            victim = procs[rng.randrange(len(procs))]
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            kills += 1
            procs[procs.index(victim)] = _start(home, sink, env)
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait()
        final = _start(home, sink, env, until_idle=True)  # reconciles what the killed ones left sending
        _, err = final.communicate(timeout=240)
        assert final.returncode == 0, err.decode()[-2000:]

        assert kills >= 1  # on an idle machine the workers may finish the wave before a second kill
        assert _unfinished(rt) == 0
        with rt.store.engine.connect() as conn:
            statuses = Counter(s for (s,) in conn.execute(sa.select(journey_runs.c.status)))
            run_ids = {p: r for p, r in conn.execute(sa.select(journey_runs.c.person_id, journey_runs.c.id))}
        assert statuses == {"exited": PERSONS}, statuses
        ledger = {r.key: r for r in Ledger(rt.store.engine).rows()}
        expected = {send_key("crash", node, run_ids[p]) for p in persons for node in ("first", "second")}
        assert set(ledger) == expected  # no person lost, one row per (journey, step, run)
        counts = Counter(r.status for r in ledger.values())
        assert set(counts) <= {"delivered", "ambiguous"}, counts
        keys = sink_keys(sink)
        duplicates = [k for k, n in Counter(keys).items() if n > 1]
        assert duplicates == []
        delivered = {k for k, r in ledger.items() if r.status == "delivered"}
        assert delivered == set(keys)  # ledger count == sink count
        print(f"\n{backend}: {kills} kills, ledger {dict(counts)}, sink {len(keys)}")
    finally:
        rt.close()
