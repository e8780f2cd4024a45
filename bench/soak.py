"""Soak benchmark (issue 24 §6 item 1): a steady load on a real `omniweave serve` for N minutes, then
proof that nothing acknowledged was lost or doubled.

Starts `python -m omniweave serve` on a fresh home (SQLite, the loader running as in production) and
drives it from one asyncio process over keep-alive HTTP/1.1 connections, open loop: request k is due at
start + k / rate, whatever the answers before it, so a slow server shows up as latency and backlog, not
as a politely slower client. Each request is a /v1/batch of `--batch` events (track, page and identify
calls, fresh messageIds). Afterwards the loader is allowed to drain, and every acknowledged messageId is
looked up in the Parquet event log with DuckDB. Prints:

  - events/s offered and acknowledged, requests that were not a 200 (by status), connection errors;
  - request latency p50 / p99 / max (send to full answer), per minute and overall;
  - acknowledged events missing from the log, and events in the log more than once (both must be 0);
  - the committer's and the loader's restarts, the loader's drain time.

    python bench/soak.py [--minutes 10] [--rate 1500] [--batch 20] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
import uuid
from base64 import b64encode
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).parent))
from _server import Server  # noqa: E402

TYPES = ("track", "track", "page", "identify")


def event(run: str, n: int, i: int) -> tuple[str, str]:
    """(messageId, the event's JSON) for event i of request n."""
    message_id = f"{run}-{n}-{i}"
    kind = TYPES[(n + i) % len(TYPES)]
    user = f"user-{(n * 31 + i) % 20000}"
    if kind == "track":
        body = (
            f'{{"type":"track","event":"Product Viewed","userId":"{user}","messageId":"{message_id}",'
            f'"properties":{{"product_id":"p-{i % 500}","price":{(n + i) % 90 + 9.99},"currency":"EUR"}},'
            '"context":{"library":{"name":"analytics.js","version":"4.1.0"},"userAgent":"Mozilla/5.0 (X11)"}}'
        )
    elif kind == "page":
        body = (
            f'{{"type":"page","name":"Category","userId":"{user}","messageId":"{message_id}",'
            f'"properties":{{"url":"https://shop.example/c/{i % 40}?utm_source=news&utm_medium=email"}}}}'
        )
    else:
        body = (
            f'{{"type":"identify","userId":"{user}","messageId":"{message_id}",'
            f'"traits":{{"plan":"gold","visits":{n % 100}}}}}'
        )
    return message_id, body


class Load:
    def __init__(self, base_url: str, write_key: str, rate: float, batch: int, seconds: float, connections: int):
        self.host, port = base_url.removeprefix("http://").split(":")
        self.port = int(port)
        self.auth = b64encode(f"{write_key}:".encode()).decode()
        self.per_second = rate / batch  # requests per second
        self.batch, self.seconds, self.connections = batch, seconds, connections
        self.run = uuid.uuid4().hex[:8]
        self.acked: list[str] = []
        self.latencies: list[tuple[float, float]] = []  # (seconds since start, latency)
        self.statuses: dict[int, int] = {}
        self.errors = 0
        self.sent = 0

    async def go(self) -> float:
        self.started = time.monotonic()
        self.next_request = 0
        await asyncio.gather(*(self.connection() for _ in range(self.connections)))
        return time.monotonic() - self.started

    async def connection(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        total = int(self.per_second * self.seconds)
        while True:
            n = self.next_request
            if n >= total:
                break
            self.next_request += 1
            due = self.started + n / self.per_second
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            pairs = [event(self.run, n, i) for i in range(self.batch)]
            payload = ('{"batch":[' + ",".join(body for _, body in pairs) + "]}").encode()
            head_out = (
                f"POST /v1/batch HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAuthorization: Basic {self.auth}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
            ).encode()
            begun = time.monotonic()
            try:
                writer.write(head_out + payload)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
                await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError) as exc:
                self.errors += 1
                print(f"connection error: {exc!r}; reconnecting", file=sys.stderr)
                writer.close()
                reader, writer = await asyncio.open_connection(self.host, self.port)
                continue
            done = time.monotonic()
            # latency from when the request was due: a server that falls behind is charged for the wait
            self.latencies.append((begun - self.started, done - min(begun, max(due, self.started))))
            status = int(head[9:12])
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status == 200:
                self.acked.extend(message_id for message_id, _ in pairs)
        writer.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def check_log(home: Path, acked: list[str], run: str) -> tuple[int, int, int]:
    """(acknowledged ids missing from the log, ids in the log more than once, rows of this run in the log)."""
    con = duckdb.connect()
    with tempfile.TemporaryDirectory() as tmp:
        ids = Path(tmp) / "acked.csv"
        ids.write_text("message_id\n" + "\n".join(acked) + "\n")
        con.execute(
            f"create table acked as select * from read_csv('{ids}', header=true, columns={{'message_id':'VARCHAR'}})"
        )
    files = str(home / "warehouse" / "events" / "**" / "*.parquet")
    con.execute(
        f"create table logged as select message_id, count(*) as n from read_parquet('{files}', hive_partitioning=true) "
        f"where message_id like '{run}-%' group by message_id"
    )
    missing = con.execute("select count(*) from acked a anti join logged l using (message_id)").fetchone()[0]
    doubled = con.execute("select count(*) from logged where n > 1").fetchone()[0]
    rows = con.execute("select coalesce(sum(n), 0) from logged").fetchone()[0]
    return int(missing), int(doubled), int(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=1500.0, help="events per second offered")
    parser.add_argument("--batch", type=int, default=20, help="events per request")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="omniweave-soak-") as tmp:
        home = Path(tmp) / "home"
        server = Server(home)
        try:
            load = Load(server.base_url, server.write_key, args.rate, args.batch, args.minutes * 60, args.connections)
            print(
                f"soak: {args.rate:,.0f} events/s offered for {args.minutes:g} min, batches of {args.batch}, "
                f"{args.connections} connections, run {load.run}"
            )
            elapsed = asyncio.run(load.go())
            drained = server.wait_for_loader(timeout=600)
            health = server.health()
            missing, doubled, rows = check_log(home, load.acked, load.run)
        finally:
            server.stop()
    requests = sum(load.statuses.values())
    offered = requests * args.batch
    latencies = [latency for _, latency in load.latencies]
    print(f"elapsed                 {elapsed:8.1f} s")
    print(f"events offered          {offered:8,d}  ({offered / elapsed:,.0f}/s)")
    print(f"events acknowledged     {len(load.acked):8,d}  ({len(load.acked) / elapsed:,.0f}/s)")
    print(f"answers by status       {dict(sorted(load.statuses.items()))}; connection errors {load.errors}")
    print(
        f"latency ms              p50 {statistics.median(latencies) * 1000:.1f}  "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f}  max {max(latencies) * 1000:.1f}"
    )
    first = [lat for at, lat in load.latencies if at < 5]
    if first:
        print(f"  first 5 s             p99 {percentile(first, 0.99) * 1000:.1f} (the committer and caches warming)")
    steady = [lat for at, lat in load.latencies if at >= 5]
    if steady:
        print(
            f"  after the first 5 s   p50 {statistics.median(steady) * 1000:.1f}  p99 {percentile(steady, 0.99) * 1000:.1f}"
        )
    for minute in range(int(elapsed // 60) + 1):
        window = [lat for at, lat in load.latencies if minute * 60 <= at < (minute + 1) * 60]
        if window:
            print(
                f"  minute {minute + 1:2d}             p50 {statistics.median(window) * 1000:.1f}  "
                f"p99 {percentile(window, 0.99) * 1000:.1f}  "
                f"({len(window) * args.batch / min(60.0, elapsed - minute * 60):,.0f} events/s)"
            )
    print(f"loader drained in       {drained:8.1f} s after the load")
    print(f"in the event log        {rows:8,d} rows of this run")
    print(f"acked but missing       {missing:8,d}")
    print(f"in the log twice+       {doubled:8,d}")
    print(f"committer restarts      {health['collector']['restarts']:8d}")
    print(f"loader restarts         {health['loader']['restarts']:8d}  last error: {health['loader']['last_error']}")
    print("ZERO LOSS" if missing == 0 and doubled == 0 else "LOSS OR DUPLICATES: see above")


if __name__ == "__main__":
    main()
