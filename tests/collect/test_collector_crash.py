"""Crash safety: every acknowledged event is in the event log exactly once after `kill -9`.

Client threads stream batches to a live `omniweave serve` and remember the messageIds of every
batch that got a 200. The server is killed with SIGKILL three times, at different moments: while
requests are in flight, while the loader is in the middle of writing Parquet (its pending range
is recorded), and right after a burst of acknowledgements. After each kill the server restarts
on the same home; the clients keep going (and re-send some acknowledged batches, as SDKs do after
a timeout). Finally the loader drains and the Parquet log is read with DuckDB.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import httpx
import orjson
import pytest

from omniweave.storage.eventlog import EventLog
from omniweave.storage.ops.store import OpStore
from tests.conftest import create_write_key, free_port, start_server

SERVER_ENV = {
    "OMNIWEAVE_LOADER_BATCH_SIZE": "700",
    "OMNIWEAVE_LOADER_INTERVAL_SECONDS": "0.02",
    "OMNIWEAVE_LOADER_MAX_DELAY_SECONDS": "0",
}  # the loader runs while requests stream in


class Streamer:
    """Client threads posting batches of 40 events; records what was acknowledged."""

    def __init__(self, base_url: str, write_key: str, threads: int = 4):
        self.base_url, self.write_key = base_url, write_key
        self.acked: list[list[str]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.counter = itertools.count()
        self.run = uuid.uuid4().hex[:6]
        self.threads = [threading.Thread(target=self._stream, daemon=True) for _ in range(threads)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def acked_count(self) -> int:
        with self.lock:
            return len(self.acked)

    def _batch(self) -> tuple[list[str], bytes]:
        n = next(self.counter)
        ids = [f"{self.run}-{n}-{i}" for i in range(40)]
        events = [
            {
                "type": "track",
                "event": "Product Viewed",
                "userId": f"u{i % 13}",
                "messageId": m,
                "properties": {"price": i, "batch": n},
            }
            for i, m in enumerate(ids)
        ]
        return ids, orjson.dumps({"batch": events})

    def _stream(self) -> None:
        with httpx.Client(base_url=self.base_url, auth=(self.write_key, ""), timeout=10) as client:
            while not self.stop.is_set():
                ids, body = self._batch()
                if self.post(client, body):
                    with self.lock:
                        self.acked.append(ids)

    def post(self, client: httpx.Client, body: bytes) -> bool:
        try:
            response = client.post("/v1/batch", content=body, headers={"Content-Type": "application/json"})
        except httpx.HTTPError:
            time.sleep(0.05)  # the server is down; this batch was never acknowledged
            return False
        return response.status_code == 200

    def resend(self, count: int) -> None:
        """Re-send some acknowledged batches (an SDK that timed out does this)."""
        with self.lock:
            batches = self.acked[:count]
        with httpx.Client(base_url=self.base_url, auth=(self.write_key, ""), timeout=10) as client:
            for ids in batches:
                events = [{"type": "track", "event": "Product Viewed", "userId": "again", "messageId": m} for m in ids]
                assert client.post("/v1/batch", json={"batch": events}).status_code == 200


def loader_processes(home: Path) -> list[int]:
    """Pids of loader children serving `home` (there must be none once their server is dead)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"run_loader_child" in cmdline and str(home).encode() in cmdline:
            found.append(int(entry))
    return found


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def kill_hard(process: Any, home: Path) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    wait_until(lambda: not loader_processes(home), 10, "the loader child to die with its server")


@pytest.mark.timeout(120)
def test_every_acknowledged_event_survives_kill_9_exactly_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_key = create_write_key(home)
    port = free_port()
    store = OpStore(f"sqlite:///{home / 'omniweave.db'}")
    process, _ = start_server(home, port, SERVER_ENV)
    streamer = Streamer(f"http://127.0.0.1:{port}", write_key)
    streamer.start()
    try:
        # 1. in the middle of a stream of requests
        wait_until(lambda: streamer.acked_count() >= 60, 30, "60 acknowledged batches")
        kill_hard(process, home)
        process, _ = start_server(home, port, SERVER_ENV)

        # 2. while the loader is writing a range it has marked pending
        seen = streamer.acked_count()
        wait_until(lambda: streamer.acked_count() >= seen + 40, 30, "more acknowledged batches")

        def loader_mid_write() -> bool:
            state = store.consumers().get("loader")
            return state is not None and state.pending_end is not None

        wait_until(loader_mid_write, 30, "the loader to be mid-write")
        kill_hard(process, home)
        process, _ = start_server(home, port, SERVER_ENV)

        # 3. right after a burst of acknowledgements
        seen = streamer.acked_count()
        wait_until(lambda: streamer.acked_count() >= seen + 25, 30, "a burst of acknowledgements")
        kill_hard(process, home)
        process, _ = start_server(home, port, SERVER_ENV)

        seen = streamer.acked_count()
        wait_until(lambda: streamer.acked_count() >= seen + 20, 30, "acknowledgements after the last restart")
        streamer.join()
        streamer.resend(30)

        def drained() -> bool:
            loader = httpx.get(f"http://127.0.0.1:{port}/health").json()["loader"]
            return loader["lag"] == 0 and loader["running"]

        wait_until(drained, 60, "the loader to drain the inbox")
    finally:
        streamer.stop.set()
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=60)
        store.close()

    acknowledged = [m for ids in streamer.acked for m in ids]
    assert len(acknowledged) == len(set(acknowledged)) > 0
    files = EventLog(str(home / "warehouse")).files("events")
    counts = dict(
        duckdb.sql(f"select message_id, count(*) from read_parquet({files!r}) group by message_id").fetchall()
    )
    missing = [m for m in acknowledged if m not in counts]
    assert missing == [], f"{len(missing)} acknowledged events are not in the log"
    duplicated = {m: n for m, n in counts.items() if n != 1}
    assert duplicated == {}, f"{len(duplicated)} events are in the log more than once"
