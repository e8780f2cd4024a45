"""The loader moves the inbox into the day-partitioned Parquet log exactly once, even after a crash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pyarrow.parquet as pq

from omniweave.collect.loader import LOADER, load_all, load_once
from omniweave.events.normalize import normalize_event
from omniweave.storage.eventlog import EVENT_SCHEMA, EventLog, events_to_table
from omniweave.storage.ops.store import OpStore

T0 = datetime(2026, 3, 1, 23, 59, 0, tzinfo=UTC)


def make_rows(source: str, n: int, start: int = 0) -> list[tuple[str, str, float, bytes]]:
    rows = []
    for i in range(start, start + n):
        received = T0 + timedelta(seconds=i)  # crosses midnight: two day partitions
        event = normalize_event(
            {
                "type": "track",
                "event": "Product Viewed",
                "userId": f"u{i % 7}",
                "messageId": f"m{i}",
                "properties": {"price": i},
            },
            received_at=received,
        )
        rows.append((source, event["messageId"], received.timestamp(), orjson.dumps(event)))
    return rows


def count(log: EventLog) -> tuple[int, int]:
    import duckdb

    files = log.files("events")
    if not files:
        return 0, 0
    total, distinct = duckdb.sql(
        f"select count(*), count(distinct message_id) from read_parquet({files!r})"
    ).fetchall()[0]
    return int(total), int(distinct)


def test_events_land_in_day_partitions(tmp_path):
    store, log = OpStore(f"sqlite:///{tmp_path}/ops.db"), EventLog(str(tmp_path / "wh"))
    assert store.append(make_rows("s1", 120)) == 120
    assert load_all(store, log, batch_size=50) == 120
    days = sorted({f.split("date=")[1][:10] for f in log.files("events")})
    assert days == ["2026-03-01", "2026-03-02"]
    assert count(log) == (120, 120)
    table = pq.read_table(log.files("events")[0])
    assert table.schema.names == EVENT_SCHEMA.names
    assert store.consumer(LOADER).position == store.max_seq()


def test_duplicates_are_ignored_by_the_inbox(tmp_path):
    store, log = OpStore(f"sqlite:///{tmp_path}/ops.db"), EventLog(str(tmp_path / "wh"))
    store.append(make_rows("s1", 10))
    assert store.append(make_rows("s1", 10)) == 0
    assert store.append(make_rows("s2", 10)) == 10  # dedupe is per source
    load_all(store, log)
    assert count(log) == (20, 10)


def test_a_crash_between_writing_and_committing_leaves_one_copy(tmp_path):
    store, log = OpStore(f"sqlite:///{tmp_path}/ops.db"), EventLog(str(tmp_path / "wh"))
    store.append(make_rows("s1", 30))
    # a loader reads a range, marks it pending and writes it, then dies before committing
    state = store.consumer(LOADER)
    rows = store.read(after=state.position, limit=20)
    store.mark_pending(LOADER, rows[-1].seq)
    table = events_to_table([{**orjson.loads(r.payload), "source": r.source_id} for r in rows], "")
    log.append("events", table, batch_name=f"inbox-{1:015d}-{rows[-1].seq:015d}")
    # more events arrive meanwhile; the restarted loader must redo exactly the pending range
    store.append(make_rows("s1", 30, start=30))
    assert load_once(store, log, batch_size=1000) == 20
    assert load_all(store, log) == 40
    assert count(log) == (60, 60)


def test_prune_keeps_the_dedupe_window_and_unconsumed_rows(tmp_path):
    store, log = OpStore(f"sqlite:///{tmp_path}/ops.db"), EventLog(str(tmp_path / "wh"))
    store.append(make_rows("s1", 10))
    now = T0.timestamp() + 3600
    assert store.prune(dedupe_seconds=60, now=now) == 0  # no consumer has read anything yet
    load_all(store, log)
    assert store.prune(dedupe_seconds=7200, now=now) == 0  # still inside the dedupe window
    assert store.prune(dedupe_seconds=60, now=now) == 10
    assert store.inbox_count() == 0


def test_the_background_loader_defers_to_a_busy_collector_for_at_most_max_delay(tmp_path):
    """While events stream in faster than the busy threshold, nothing is loaded until the oldest
    pending event is `max_delay` old; then everything pending is; once quiet, the rest follows."""
    import threading
    import time

    from omniweave.collect.loader import BackgroundLoader

    store, log = OpStore(f"sqlite:///{tmp_path / 'ops.db'}"), EventLog(str(tmp_path / "wh"))
    source = store.create_source("web")[0]
    streaming = threading.Event()
    streaming.set()
    sent = 0

    def stream() -> None:  # 50 events every 20 ms: ~2,500 a second
        nonlocal sent
        while streaming.is_set():
            now = time.time()
            rows = []
            for i in range(sent, sent + 50):
                event = normalize_event(
                    {"type": "track", "event": "Product Viewed", "userId": f"u{i}", "messageId": f"m{i}"},
                    received_at=datetime.fromtimestamp(now, UTC),
                )
                rows.append((source, event["messageId"], now, orjson.dumps(event)))
            store.append(rows)
            sent += 50
            time.sleep(0.02)

    def position() -> int:
        state = store.consumers().get(LOADER)
        return state.position if state else 0

    # Polls 0.25 s apart, and a threshold far below the stream's rate: a window is busy as soon as one
    # append of 50 lands in it, so a stalled thread on a loaded machine does not read as a quiet collector.
    loader = BackgroundLoader(store, log, batch_size=100_000, interval=0.25, busy_events_per_second=100, max_delay=3.0)
    loader.start()  # its first look finds nothing; from then on it sees the inbox grow
    time.sleep(0.2)
    streamer = threading.Thread(target=stream)
    streamer.start()
    try:
        time.sleep(0.5)
        # the first window may hold a few events that came before the stream looked busy: those may load
        before = position()
        time.sleep(1.0)
        assert position() == before and loader.deferrals > 0  # busy, and nothing pending is 3 s old yet
        assert store.max_seq() > before + 500
        deadline = time.monotonic() + 10
        while position() == before:  # the oldest pending event reaches max_delay: everything is loaded
            assert time.monotonic() < deadline, "the loader deferred for longer than max_delay"
            time.sleep(0.05)
    finally:
        streaming.clear()
        streamer.join()
    deadline = time.monotonic() + 10
    while position() < store.max_seq():  # quiet: the rest follows within an interval or so
        assert time.monotonic() < deadline, "the loader did not catch up once the collector was quiet"
        time.sleep(0.05)
    loader.stop(drain=False)
    assert count(log) == (sent, sent)
    store.close()
