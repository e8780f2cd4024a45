"""Compaction of the event log (issue 27 §5): a day's small loader files merged into few, atomically.

Every check counts what a reader sees against what was written: no row lost, none twice, whatever the
compaction was doing at the time — merging while readers query, killed with SIGKILL at a random moment,
running while a person is deleted.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import orjson
import pyarrow.parquet as pq
import pytest

from omniweave.collect.compaction import compact
from omniweave.collect.loader import LOADER, load_all
from omniweave.events.normalize import normalize_event
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.storage.compaction import CompactionOptions, batch_name, superseded, visible
from omniweave.storage.eventlog import events_to_table

DAY = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)  # a day that is over: every file of it may be merged
VICTIM = "victim-user-7f3a9c"
EVERYTHING_NOW = CompactionOptions(target_bytes=128 * 1024 * 1024, min_age_seconds=0, grace_seconds=0)


def rows(n: int, start: int = 0, victim_every: int = 0) -> list[tuple[str, str, float, bytes]]:
    out = []
    for i in range(start, start + n):
        at = DAY + timedelta(seconds=i)
        user = VICTIM if victim_every and i % victim_every == 0 else f"user-{i % 13}"
        event = normalize_event(
            {"type": "track", "event": "Product Viewed", "userId": user, "messageId": f"m{i}", "properties": {"i": i}},
            received_at=at,
        )
        out.append(("s1", event["messageId"], at.timestamp(), orjson.dumps(event)))
    return out


def small_files_log(home: Path, n: int, batch: int, victim_every: int = 0) -> Runtime:
    """A home whose log holds `n` events of one day in files of `batch` events (the loader's own files)."""
    rt = Runtime(Settings(home=str(home)))
    rt.store.append(rows(n, victim_every=victim_every))
    load_all(rt.store, rt.log, batch_size=batch)
    return rt


def listed_ids(rt: Runtime) -> Counter[str]:
    """Every message id a reader of the log sees (through EventLog.files), with how often."""
    files = rt.log.files("events")
    if not files:
        return Counter()
    found = duckdb.sql(f"SELECT message_id FROM read_parquet({files!r})").fetchall()
    return Counter(r[0] for r in found)


def all_rows(rt: Runtime) -> list[tuple]:
    """Every row (every column) a reader sees, in a canonical order."""
    table = rt.warehouse().table("events").to_pyarrow()
    return sorted(tuple(str(v) for v in row.values()) for row in table.to_pylist())


def day_folder(rt: Runtime, day: datetime = DAY) -> Path:
    return Path(rt.log.dataset_path("events")) / f"date={day.date().isoformat()}"


COMPACT_CHILD = textwrap.dedent(
    """
    import json, sys
    from omniweave.collect.compaction import compact
    from omniweave.runtime import Runtime
    from omniweave.settings import Settings
    from omniweave.storage.compaction import CompactionOptions

    home, target, grace = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    rt = Runtime(Settings(home=home))
    rt.store.consumer("loader")  # the store opened (and migrated) before we say we started
    print("start", flush=True)
    run = compact(rt, options=CompactionOptions(target_bytes=target, min_age_seconds=0, grace_seconds=grace))
    print(json.dumps(run.to_dict()), flush=True)
    """
)


def start_compaction(home: Path, target: int, grace: float) -> subprocess.Popen[str]:
    """A compaction pass in a process of its own, returned once it is about to start compacting."""
    proc = subprocess.Popen(
        [sys.executable, "-c", COMPACT_CHILD, str(home), str(target), str(grace)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "start", proc.stderr.read() if proc.stderr else line
    return proc


def test_the_superseded_rule() -> None:
    folder = "/wh/events/date=2026-03-01"
    a, b, c = (f"{folder}/{batch_name(x, y)}.parquet" for x, y in ((1, 5), (6, 9), (10, 12)))
    merged = f"{folder}/{batch_name(1, 9)}.parquet"
    other = f"{folder}/import-abc.parquet"
    elsewhere = f"/wh/events/date=2026-03-02/{batch_name(1, 5)}.parquet"
    paths = [a, b, c, merged, other, elsewhere]
    assert superseded(paths) == {a: merged, b: merged}
    assert visible(paths) == [c, merged, other, elsewhere]
    wider = f"{folder}/{batch_name(1, 12)}.parquet"
    assert superseded([*paths, wider]) == {a: wider, b: wider, c: wider, merged: wider}


def test_compaction_keeps_every_row_as_it_was(tmp_path: Path) -> None:
    rt = small_files_log(tmp_path / "home", 600, batch=7)
    before_rows = all_rows(rt)
    files_before = len(rt.log.files("events"))
    assert files_before == -(-600 // 7)
    run = compact(rt, options=EVERYTHING_NOW)
    (day,) = run.days
    assert (day.files_before, day.files_after, day.merged, day.written) == (files_before, 1, files_before, 1)
    assert day.rows == 600 and day.removed == files_before
    assert all_rows(rt) == before_rows  # every column of every row, once
    assert [p.name for p in day_folder(rt).iterdir()] == [f"{batch_name(1, 600)}.parquet"]
    # the merged file is read quickly: a few row groups, not one per loader file
    assert pq.ParquetFile(rt.log.files("events")[0]).metadata.num_row_groups == 1
    again = compact(rt, options=EVERYTHING_NOW)
    assert again.merged == 0 and listed_ids(rt) == Counter(f"m{i}" for i in range(600))
    rt.close()


def test_a_target_size_cuts_the_day_into_several_files_and_the_next_pass_joins_what_fits(tmp_path: Path) -> None:
    rt = small_files_log(tmp_path / "home", 400, batch=4)
    sizes = [os.path.getsize(p) for p in rt.log.files("events")]
    target = sum(sizes) // 5
    run = compact(rt, options=CompactionOptions(target_bytes=target, min_age_seconds=0, grace_seconds=0))
    written = run.days[0].files_after
    assert 5 <= written <= 8  # groups of at most `target` bytes; merged files are smaller than their parts
    assert all(os.path.getsize(p) <= target for p in rt.log.files("events"))
    assert listed_ids(rt) == Counter(f"m{i}" for i in range(400))
    compact(rt, options=CompactionOptions(target_bytes=target, min_age_seconds=0, grace_seconds=0))
    assert len(rt.log.files("events")) < written  # merged files that fit together are joined the next time
    assert listed_ids(rt) == Counter(f"m{i}" for i in range(400))
    rt.close()


def test_what_the_loader_may_still_write_is_left_alone_and_a_redo_is_superseded(tmp_path: Path) -> None:
    rt = small_files_log(tmp_path / "home", 100, batch=10)
    # a batch in flight: marked pending and written, not committed (the loader died before its commit)
    rt.store.append(rows(10, start=100))
    rt.store.mark_pending(LOADER, 110)
    pending = [{**orjson.loads(r.payload), "source": r.source_id} for r in rt.store.read(after=100, upto=110)]
    rt.log.append("events", events_to_table(pending, ""), batch_name=batch_name(101, 110))
    compact(rt, options=EVERYTHING_NOW)
    names = sorted(p.name for p in day_folder(rt).iterdir())
    assert names == [f"{batch_name(1, 100)}.parquet", f"{batch_name(101, 110)}.parquet"]
    # the loader restarts and redoes its batch; then an old batch is written again (a redo after a crash)
    assert load_all(rt.store, rt.log, batch_size=10) == 10
    old = [{**orjson.loads(r.payload), "source": r.source_id} for r in rt.store.read(after=10, upto=20)]
    rt.log.append("events", events_to_table(old, ""), batch_name=batch_name(11, 20))
    assert listed_ids(rt) == Counter(f"m{i}" for i in range(110))  # the rewritten old batch is not listed
    compact(rt, options=EVERYTHING_NOW)
    assert sorted(p.name for p in day_folder(rt).iterdir()) == [f"{batch_name(1, 110)}.parquet"]
    assert listed_ids(rt) == Counter(f"m{i}" for i in range(110))
    rt.close()


def test_an_open_day_merges_only_files_older_than_the_minimum_age(tmp_path: Path) -> None:
    rt = Runtime(Settings(home=str(tmp_path / "home")))
    now = datetime.now(UTC).replace(microsecond=0)
    events = [
        normalize_event({"type": "track", "event": "Viewed", "userId": "u", "messageId": f"t{i}"}, received_at=now)
        for i in range(20)
    ]
    rt.store.append([("s1", e["messageId"], now.timestamp(), orjson.dumps(e)) for e in events])
    load_all(rt.store, rt.log, batch_size=5)
    files = rt.log.files("events")
    old = datetime(2020, 1, 1).timestamp()
    for path in files[:2]:  # two files written long ago, two just now
        os.utime(path, (old, old))
    run = compact(rt, options=CompactionOptions(min_age_seconds=3600, grace_seconds=0))
    assert (run.merged, run.written) == (2, 1)
    assert len(rt.log.files("events")) == 3
    assert listed_ids(rt) == Counter(f"t{i}" for i in range(20))
    rt.close()


def test_a_reader_querying_during_compaction_always_counts_every_event_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    rt = small_files_log(home, 1500, batch=3)
    target = sum(os.path.getsize(p) for p in rt.log.files("events")) // 40  # about 40 merges, one at a time
    proc = start_compaction(home, target, grace=300)
    counts = []
    while proc.poll() is None:
        counts.append(rt.warehouse().sql("SELECT count(*) AS n, count(DISTINCT message_id) AS d FROM events"))
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    run = json.loads(out)
    assert run["written"] >= 10
    seen = Counter((c.column("n")[0].as_py(), c.column("d")[0].as_py()) for c in counts)
    assert seen and set(seen) == {(1500, 1500)}, seen
    assert len(counts) >= 2  # the reader did query while the compaction ran
    # the merged files' parts are still on disk (the grace), unlisted
    assert len(rt.log.files("events", superseded=True)) > len(rt.log.files("events"))
    rt.close()


def test_kill_9_during_compaction_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    rt = small_files_log(home, 1200, batch=3)
    expected = Counter(f"m{i}" for i in range(1200))
    target = sum(os.path.getsize(p) for p in rt.log.files("events")) // 30
    chance = random.Random(27)
    kills = 0
    for _ in range(5):
        folder = day_folder(rt)
        old = set(os.listdir(folder))
        proc = start_compaction(home, target, grace=0)
        # a random moment: after 0 to 3 merges, plus up to 20 ms (writing, renaming or removing files)
        merges = chance.randint(0, 3)
        while proc.poll() is None and len({n for n in os.listdir(folder) if n.startswith("inbox-")} - old) < merges:
            threading.Event().wait(0.002)
        threading.Event().wait(chance.uniform(0.0, 0.02))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.communicate()
        assert listed_ids(rt) == expected
        assert all_rows_count(rt) == 1200
    assert kills >= 3
    run = compact(rt, options=EVERYTHING_NOW)  # the next pass finishes the work and clears what was left
    assert listed_ids(rt) == expected
    names = [p.name for p in day_folder(rt).iterdir()]
    assert not [n for n in names if n.startswith(".tmp")], names
    assert len(names) <= 2 and run.days[0].files_after == len(names)
    rt.close()


def all_rows_count(rt: Runtime) -> int:
    return int(rt.warehouse().sql("SELECT count(*) AS n FROM events").column("n")[0].as_py())


def test_compaction_and_a_privacy_deletion_at_once(tmp_path: Path) -> None:
    from omniweave.privacy.service.requests import submit

    home = tmp_path / "home"
    rt = small_files_log(home, 1200, batch=3, victim_every=10)
    everyone = Counter(f"m{i}" for i in range(1200) if i % 10)
    target = sum(os.path.getsize(p) for p in rt.log.files("events")) // 30
    folder = day_folder(rt)
    old = set(os.listdir(folder))
    proc = start_compaction(home, target, grace=0)
    while proc.poll() is None and not {n for n in os.listdir(folder) if n.startswith("inbox-")} - old:
        threading.Event().wait(0.002)  # the deletion starts once the first merge is in
    settings = rt.settings.with_overrides(privacy=rt.settings.privacy.__class__(blocklist_refresh_seconds=0.2))
    deleter = Runtime(settings)
    result = submit(deleter, "delete", f"user_id:{VICTIM}")
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert result.status == "done", result
    assert json.loads(out)["written"] >= 1
    compact(rt, options=EVERYTHING_NOW)
    assert listed_ids(rt) == everyone
    # no file on disk (listed or not) holds the victim
    for path in Path(rt.log.dataset_path("events")).rglob("*.parquet"):
        table = pq.read_table(path)
        assert VICTIM not in table.column("user_id").to_pylist(), path
    deleter.close()
    rt.close()


# --- through `omniweave serve` --------------------------------------------------------------------


@pytest.mark.slow
def test_events_streamed_through_serve_are_each_found_once_in_a_few_files(tmp_path: Path) -> None:
    import httpx

    from tests.conftest import create_write_key, free_port, omniweave_cmd, start_server

    home = tmp_path / "home"
    key = create_write_key(home)
    port = free_port()
    env = {
        "OMNIWEAVE_LOADER_INTERVAL_SECONDS": "0.1",
        "OMNIWEAVE_COMPACTION_INTERVAL_SECONDS": "2",
        "OMNIWEAVE_COMPACTION_MIN_AGE_SECONDS": "1",
        "OMNIWEAVE_COMPACTION_GRACE_SECONDS": "1",
    }
    proc, _ = start_server(home, port, env)
    auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    acknowledged: list[str] = []
    most_files = 0
    seen: set[str] = set()
    rt = Runtime(Settings(home=str(home)))
    try:
        chance = random.Random(5)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=10) as client:
            deadline = datetime.now(UTC) + timedelta(seconds=20)
            i = 0
            while datetime.now(UTC) < deadline:
                batch = [
                    {"type": "track", "event": "Page Viewed", "userId": f"u{(i + k) % 17}", "messageId": f"s{i + k}"}
                    for k in range(chance.randint(1, 3))
                ]
                i += len(batch)
                if client.post("/v1/batch", json={"batch": batch}).status_code == 200:
                    acknowledged += [e["messageId"] for e in batch]
                listed = rt.log.files("events")
                most_files = max(most_files, len(listed))
                seen.update(Path(p).name for p in listed)
                threading.Event().wait(0.05)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert len(acknowledged) >= 200
    # the server compacted as it went: files listed during the stream that hold others listed before, and
    # never as many files listed at once as the loader wrote (the files holding no other one)
    spans = [_span(name) for name in seen]
    held = [sum(1 for first, last in spans if lo <= first and last <= hi) for lo, hi in spans]  # itself included
    holders = [n for n in held if n > 2]
    written = [n for n in held if n == 1]
    assert holders, f"no file merged by serve among {sorted(seen)}"
    assert most_files < len(written), (most_files, len(written))
    done = subprocess.run(
        omniweave_cmd("log", "compact", "--grace", "0", "--format", "json"),
        env={**os.environ, "OMNIWEAVE_HOME": str(home), "OMNIWEAVE_COMPACTION_MIN_AGE_SECONDS": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(done.stdout)
    assert listed_ids(rt) == Counter(acknowledged)  # every acknowledged event, once
    for day in report["days"]:
        folder = Path(rt.log.dataset_path("events")) / f"date={day['day']}"
        on_disk = [p for p in folder.iterdir()]
        assert len(on_disk) == day["files_after"] == 1, on_disk
    rt.close()


def _span(name: str) -> tuple[int, int]:
    first, last = (int(x) for x in name.removeprefix("inbox-").removesuffix(".parquet").split("-"))
    return first, last


def test_compaction_settings_are_checked() -> None:
    from omniweave.collect.compaction import compaction_options
    from omniweave.errors import ConfigError

    with pytest.raises(ConfigError, match="compaction_target_bytes = 0"):
        compaction_options(Settings(compaction_target_bytes=0))
    with pytest.raises(ConfigError, match="compaction_grace_seconds"):
        compaction_options(Settings(), grace_seconds=-1)
    assert compaction_options(Settings()).target_bytes == 128 * 1024 * 1024


LOCK_CHILD = textwrap.dedent(
    """
    import sys, time
    from omniweave.storage.locks import eventlog_lock
    from omniweave.storage.ops.store import OpStore

    store = OpStore(sys.argv[1])
    with eventlog_lock(store):
        print("held", flush=True)
        time.sleep(600)
    """
)


def test_the_event_log_lock_is_exclusive_and_dies_with_its_holder(opstore_url: str) -> None:
    from omniweave.storage.locks import LockBusy, eventlog_lock
    from omniweave.storage.ops.store import OpStore

    store = OpStore(opstore_url)
    holder = subprocess.Popen([sys.executable, "-c", LOCK_CHILD, opstore_url], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy, match="compaction waited 0.3 s"), eventlog_lock(store, 0.3, "compaction"):
            pass
        os.kill(holder.pid, signal.SIGKILL)  # a holder that dies gives the lock back
        holder.wait()
        # taken here now; whoever else asks waits
        with eventlog_lock(store, 30, "compaction"), pytest.raises(LockBusy), eventlog_lock(store, 0.2, "privacy"):
            pass
    finally:
        holder.kill()
        holder.wait()
        store.close()


@pytest.mark.spark
def test_spark_reads_the_listed_files_not_the_superseded_ones(tmp_path: Path, spark_session) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import on_engine

    rt = small_files_log(tmp_path / "home", 300, batch=10)
    compact(rt, options=CompactionOptions(min_age_seconds=0, grace_seconds=3600))  # the parts stay on disk
    assert len(rt.log.files("events", superseded=True)) == 31 and len(rt.log.files("events")) == 1
    sql = "SELECT count(*) AS n, count(DISTINCT message_id) AS d, min(date) AS day FROM events"
    spark = on_engine(rt, "spark", spark_session)
    on_spark = spark.warehouse().sql(sql).to_pylist()
    assert on_spark == rt.warehouse().sql(sql).to_pylist()
    assert on_spark[0]["n"] == on_spark[0]["d"] == 300 and str(on_spark[0]["day"]) == "2026-03-01"
    spark.close()
    rt.close()
