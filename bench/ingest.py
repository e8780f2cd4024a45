"""Ingest benchmark: the collector's durable throughput, its HTTP ceiling, and the till importer.

Starts `python -m omniweave serve` on a fresh home (SQLite WAL, synchronous=FULL, group commit,
the loader running as in production) and drives it from this machine with `wrk` and a Lua
script when `wrk` is installed, else with a multi-process Python asyncio generator. Every request
carries fresh messageIds, so every acknowledged event is really written. Prints, side by side:

  - durable events/s through /v1/batch (batches of 100), checked against the inbox afterwards;
  - requests/s for single events (/v1/track) and for the no-op endpoint (/v1/noop), and the ratio;
  - rows/s importing a till file (1,000,000 rows by default) with the offline importer.

Between runs the loader is allowed to catch up, so that one run's backlog does not slow the next.

    python bench/ingest.py [--duration 10] [--till-rows 1000000] [--python-generator]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import Server

TARGET_EVENTS_PER_SECOND = 25_000
TARGET_RATIO = 0.80
RUDDERSTACK_EVENTS_PER_SECOND = 1_700  # published, 2 cores

EVENT_TEMPLATE = (
    '{"type":"track","event":"Product Viewed","userId":"user-%d","anonymousId":"anon-%d",'
    '"messageId":"%s-%d-%d","properties":{"product_id":"sku-%d","price":19.99,"currency":"GBP",'
    '"name":"Trainers"},"context":{"library":{"name":"analytics-python","version":"2.3.2"},'
    '"page":{"url":"https://shop.example/p/1?utm_source=google&utm_medium=cpc"}},'
    '"timestamp":"2024-05-01T12:%02d:%02d.%03dZ","sentAt":"2024-05-01T13:00:%02d.000Z"}'
)
# Timestamps differ from event to event (as they do from real devices); sentAt is per request.

LUA_SCRIPT = r"""
local threads = {}
local n = 0
function setup(thread)
  n = n + 1
  thread:set("tid", n)
  table.insert(threads, thread)
end
function init(args)
  size = tonumber(args[1]); path = args[2]; run = args[3]
  counter = 0; bad = 0
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Basic " .. args[4]
end
local function event(i)
  local k = counter * 131 + i * 7
  return string.format('TEMPLATE', i % 5000, i % 7000, run .. "-" .. tid, counter, i, i % 300,
    math.floor(k / 60000) % 60, math.floor(k / 1000) % 60, k % 1000, counter % 60)
end
function request()
  counter = counter + 1
  if size == 0 then return wrk.format("POST", path, nil, event(counter)) end
  local parts = {}
  for i = 1, size do parts[i] = event(i) end
  return wrk.format("POST", path, nil, '{"batch":[' .. table.concat(parts, ",") .. ']}')
end
function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end
function done(summary, latency, requests)
  local b = 0
  for _, t in ipairs(threads) do b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format("RESULT requests=%d seconds=%.3f non200=%d errors=%d p50=%.2f p99=%.2f\n",
    summary.requests, summary.duration / 1e6, b, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


@dataclass
class Run:
    """One load run: requests answered 200, wall time, latency (ms)."""

    ok: int
    failed: int
    seconds: float
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def per_second(self) -> float:
        return self.ok / self.seconds


# --- load generators --------------------------------------------------------------------------


class WrkGenerator:
    def __init__(self, workdir: Path, threads: int = 2):
        self.script = workdir / "ingest.lua"
        self.script.write_text(LUA_SCRIPT.replace("TEMPLATE", EVENT_TEMPLATE))
        self.threads = threads
        version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        match = re.search(r"wrk (\S+)", version.stdout + version.stderr)
        self.name = f"wrk {match.group(1) if match else ''} with a Lua script ({threads} threads)".replace("  ", " ")

    def run(self, base_url: str, path: str, batch: int, connections: int, seconds: float, auth: str) -> Run:
        run_id = uuid.uuid4().hex[:8]
        out = subprocess.run(
            [
                "wrk",
                f"-t{self.threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "30s",
                "-s",
                str(self.script),
                base_url,
                "--",
                str(batch),
                path,
                run_id,
                auth,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        match = re.search(
            r"RESULT requests=(\d+) seconds=([\d.]+) non200=(\d+) errors=(\d+) p50=([\d.]+) p99=([\d.]+)", out
        )
        if not match:
            raise RuntimeError(f"unexpected wrk output:\n{out}")
        requests, secs, non200, errors = int(match[1]), float(match[2]), int(match[3]), int(match[4])
        return Run(requests - non200, non200 + errors, secs, float(match[5]), float(match[6]))


def _python_worker(args: tuple[str, int, str, int, int, float, str, int]) -> tuple[int, int, float]:
    host, port, path, batch, connections, seconds, auth, worker = args
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(
        _python_load(host, port, path, batch, connections, seconds, auth, f"{uuid.uuid4().hex[:8]}-{worker}")
    )


async def _python_load(
    host: str, port: int, path: str, batch: int, connections: int, seconds: float, auth: str, run_id: str
) -> tuple[int, int, float]:
    """Keep-alive HTTP/1.1 over raw asyncio streams (an HTTP client library would be the bottleneck)."""
    started = time.monotonic()
    deadline = started + seconds
    ok = failed = 0

    def body(conn: int, n: int) -> bytes:
        events = []
        for i in range(max(batch, 1)):
            k = n * 131 + i * 7
            events.append(
                EVENT_TEMPLATE
                % (
                    i % 5000,
                    i % 7000,
                    f"{run_id}-{conn}",
                    n,
                    i,
                    i % 300,
                    k // 60000 % 60,
                    k // 1000 % 60,
                    k % 1000,
                    n % 60,
                )
            )
        text = events[0] if batch == 0 else '{"batch":[' + ",".join(events) + "]}"
        return text.encode()

    async def connection(conn: int) -> None:
        nonlocal ok, failed
        reader, writer = await asyncio.open_connection(host, port)
        n = 0
        while time.monotonic() < deadline:
            n += 1
            payload = body(conn, n)
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Basic {auth}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
            await reader.readexactly(length)
            if head.startswith(b"HTTP/1.1 200"):
                ok += 1
            else:
                failed += 1
        writer.close()

    await asyncio.gather(*(connection(c) for c in range(connections)))
    return ok, failed, time.monotonic() - started


class PythonGenerator:
    def __init__(self, why: str, processes: int = 2):
        self.processes = processes
        self.name = f"Python asyncio keep-alive HTTP/1.1 generator ({processes} processes; {why})"

    def run(self, base_url: str, path: str, batch: int, connections: int, seconds: float, auth: str) -> Run:
        host, port = base_url.removeprefix("http://").split(":")
        per = max(1, connections // self.processes)
        with multiprocessing.get_context("spawn").Pool(self.processes) as pool:
            results = pool.map(
                _python_worker, [(host, int(port), path, batch, per, seconds, auth, w) for w in range(self.processes)]
            )
        return Run(sum(r[0] for r in results), sum(r[1] for r in results), max(r[2] for r in results))


# --- the till import --------------------------------------------------------------------------


def till_import(rows: int, workdir: Path) -> tuple[float | None, str]:
    """rows/s importing a generated till file (file generation not timed)."""
    try:
        from _till import make_till_file

        from omniweave.collect.service import import_file
    except ImportError as exc:
        return None, f"not measured: the till importer or bench/_till.py is missing ({exc})"
    from omniweave.runtime import Runtime
    from omniweave.settings import Settings

    path = make_till_file(workdir / "till.csv", rows)
    runtime = Runtime(Settings(home=str(workdir / "till-home")))
    try:
        started = time.perf_counter()
        summary = import_file(runtime, "till", path)
        seconds = time.perf_counter() - started
    finally:
        runtime.close()
    return rows / seconds, f"{summary.rows_imported:,} of {rows:,} rows imported in {seconds:.1f} s"


# --- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    parser.add_argument("--batch-connections", type=int, default=64)
    parser.add_argument("--single-connections", type=int, default=256, help="for /v1/track and /v1/noop")
    parser.add_argument("--till-rows", type=int, default=1_000_000, help="0 to skip the import")
    parser.add_argument(
        "--python-generator", action="store_true", help="use the Python generator even if wrk is installed"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="omniweave-bench-") as tmp:
        workdir = Path(tmp)
        if args.python_generator or not shutil.which("wrk"):
            generator: Any = PythonGenerator(
                "chosen with --python-generator" if args.python_generator else "wrk not found"
            )
        else:
            generator = WrkGenerator(workdir)
        server = Server(workdir / "home")
        auth = __import__("base64").b64encode(f"{server.write_key}:".encode()).decode()
        print(
            f"omniweave ingest benchmark: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
            f"Python {platform.python_version()}, server and load generator on this machine"
        )
        print(f"load generator: {generator.name}; {args.duration:g} s per run after a 2 s warm-up")
        print(
            "load average before the runs (other work on this machine skews every figure): "
            + ", ".join(f"{x:.2f}" for x in os.getloadavg())
        )
        print("server: python -m omniweave serve (uvicorn, SQLite WAL synchronous=FULL, group commit, loader running)")
        try:

            def measure(path: str, batch: int, connections: int) -> tuple[Run, int]:
                """A warm-up, a pause for the loader to catch up, then the run; and the rows it stored."""
                generator.run(server.base_url, path, batch, connections, 2, auth)
                server.wait_for_loader()
                before = server.health()["inbox_last_seq"]
                run = generator.run(server.base_url, path, batch, connections, args.duration, auth)
                return run, server.health()["inbox_last_seq"] - before

            noop, _ = measure("/v1/noop", 0, args.single_connections)
            single, single_stored = measure("/v1/track", 0, args.single_connections)
            batch, stored = measure("/v1/batch", 100, args.batch_connections)
            drain = server.wait_for_loader()
        finally:
            server.stop()
        till_rate, till_note = till_import(args.till_rows, workdir) if args.till_rows else (None, "skipped")

    events_per_second = batch.ok * 100 / batch.seconds
    ratio = single.per_second / noop.per_second

    def latency(run: Run) -> str:
        return f", p50 {run.p50_ms:.1f} ms, p99 {run.p99_ms:.1f} ms" if run.p50_ms is not None else ""

    rows = [
        (
            "durable events/s, /v1/batch (100 per request)",
            f"{events_per_second:,.0f}",
            f">= {TARGET_EVENTS_PER_SECOND:,}",
            f"{args.batch_connections} connections{latency(batch)}",
        ),
        (
            "single-event requests/s, /v1/track",
            f"{single.per_second:,.0f}",
            "",
            f"{args.single_connections} connections{latency(single)}",
        ),
        (
            "no-op requests/s, /v1/noop (HTTP ceiling)",
            f"{noop.per_second:,.0f}",
            "",
            f"{args.single_connections} connections{latency(noop)}",
        ),
        ("single-event / no-op", f"{ratio:.0%}", f">= {TARGET_RATIO:.0%}", ""),
        (f"till import rows/s ({args.till_rows:,} rows)", f"{till_rate:,.0f}" if till_rate else "-", "", till_note),
    ]
    print()
    print(f"{'':48} {'measured':>10}  {'target':>10}  notes")
    for name, value, target, note in rows:
        print(f"{name:48} {value:>10}  {target:>10}  {note}")
    print()
    print(
        f"durability check: batch run {batch.ok * 100:,} events acknowledged, {stored:,} new inbox rows; "
        f"single run {single.ok:,} acknowledged, {single_stored:,} new inbox rows "
        f"(a request cut off at the end of a run may be stored without being counted)"
    )
    print(f"failed requests: batch {batch.failed}, single {single.failed}, no-op {noop.failed}")
    print(
        f"loader: caught up {drain:.1f} s after the batch run; load average after the runs: "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    print(
        f"reference: RudderStack publishes {RUDDERSTACK_EVENTS_PER_SECOND:,} events/s on 2 cores; "
        f"this run is {events_per_second / RUDDERSTACK_EVENTS_PER_SECOND:.1f}x that"
    )


if __name__ == "__main__":
    main()
