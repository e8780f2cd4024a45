"""The reliability bar (issue 24 §6, items 2–6), on loopback and bounded in time.

    2  a rate limit per write key: 429 with Retry-After, no 5xx, other keys unaffected
    3  (the collector fuzz is tests/collect/test_fuzz.py; schemathesis is tests/shells/test_api.py)
    4  clock skew: an hour-slow client clock is corrected to the receipt time; three days in the future
       without sentAt is clamped to the receipt time and flagged (docs/collector.md, "Time rules")
    5  an identify arriving after older tracks gives the same profile and segments as in order
    6  a full disk (a real ENOSPC on a small tmpfs) or a read-only warehouse while loading: the inbox keeps
       the events, the loader reports it (GET /health, the server's log), nothing is lost or doubled once
       space returns or it is writable again, and no half-written file stays behind

Item 1 (10 minutes at 1,500 events/s) is bench/soak.py, not a test.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import functools
import os
import shutil
import subprocess
import tempfile
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from omniweave.collect.loader import load_all
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.shells.api.app import create_app
from tests.conftest import IN_CI, free_port, omniweave_cmd

T = TypeVar("T")


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


# --- 2: the rate limit ------------------------------------------------------------------------------
#
# The storm's client is raw asyncio streams (on uvloop, as the server): the request's bytes are built once
# and written on kept-alive connections, and each answer is read as far as its status line, its headers
# and its Content-Length body. The test's earlier httpx async client was seen at about 200 requests/s here,
# not the storm the issue names; this one offers several thousand a second (the rate is printed).
#
# Whatever breaks a connection is a failure, counted and reported with the server's log, never retried
# silently: a reset, an end of stream before a whole answer, a `Connection: close` from the server, an
# answer that is not HTTP/1.1 with a Content-Length. What can break one (uvicorn 0.55 with httptools and
# uvloop, Linux): the keep-alive timeout racing a reused idle connection — seen on loopback with a trivial
# app: a request sent within about 20 ms of the timeout got ECONNRESET (httpx.ReadError) or an end of stream
# (serve sets 75 s; with uvicorn's 5 s, a starved CI machine where httpx's client at 200/s took 5 s to
# come back to one of its 64 connections would meet it: the likely cause of CI's ReadError, not proven;
# no connection of this storm idles more than 0.1 s); an exception in the
# application after its answer started (uvicorn closes the connection: a server fault that would otherwise
# pass for a network error; the log is checked for it); an unparsable request (400 and close); a shutdown;
# the process dying. An overflowing accept queue does not reset (net.ipv4.tcp_abort_on_overflow=0 drops the
# handshake's last ACK: 1,000 connections at once on a backlog of 4 gave timeouts, no reset; serve asks for
# 4096, capped by net.core.somaxconn), httptools has no header-size limit that these requests approach, and
# uvicorn limits no concurrency unless told to (limit_concurrency: 503s).


class Answer:
    """One HTTP answer: its status, Retry-After, and its body (kept for the refusals only)."""

    __slots__ = ("body", "retry_after", "status")

    def __init__(self, status: int, retry_after: str | None, body: bytes):
        self.status, self.retry_after, self.body = status, retry_after, body


class Storm:
    """What a storm got: every answer, the connections that broke (each with what and where), how many
    requests went out and over how many seconds."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.broken: list[str] = []
        self.sent = 0
        self.seconds = 0.0

    @property
    def rate(self) -> float:
        return len(self.answers) / self.seconds if self.seconds else 0.0


def http_request(method: str, port: int, path: str, authorization: str, body: bytes | None = None) -> bytes:
    """The bytes of one HTTP/1.1 request (kept alive), built once and written again and again."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Authorization: {authorization}"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


class BrokenAnswer(Exception):
    """An answer this client cannot read as HTTP/1.1 with a Content-Length (named, so the test shows it)."""


async def read_answer(reader: asyncio.StreamReader) -> tuple[Answer, bool]:
    """The next answer on a connection, and whether the server said it will close the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    if version != b"HTTP/1.1" or not rest[:3].isdigit():
        raise BrokenAnswer(f"not an HTTP/1.1 status line: {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get(b"content-length")
    if length is None or not length.isdigit():
        raise BrokenAnswer(f"an answer without a Content-Length: {head!r}")
    body = await reader.readexactly(int(length))
    status = int(rest[:3])
    retry_after = headers[b"retry-after"].decode() if b"retry-after" in headers else None
    closing = b"close" in headers.get(b"connection", b"").lower()
    return Answer(status, retry_after, b"" if status == 200 else body), closing


async def _connection(port: int, request: bytes, storm: Storm, more: Callable[[], bool], pause: float = 0.0) -> None:
    """One kept-alive connection sending `request` while `more()`, one at a time; a broken connection is
    recorded in `storm.broken` and replaced by a new one."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answered = 0
    try:
        while more():
            storm.sent += 1
            writer.write(request)
            try:
                answer, closing = await read_answer(reader)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, BrokenAnswer) as exc:
                storm.broken.append(f"{type(exc).__name__}: {exc} (after {answered} answers on the connection)")
                closing, answer = True, None
            if answer is not None:
                storm.answers.append(answer)
                answered += 1
                if closing:
                    storm.broken.append(f"the server closed the connection after a {answer.status} ({answered})")
            if closing:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                answered = 0
            if pause:
                await asyncio.sleep(pause)
    finally:
        writer.close()


async def storm(
    port: int, request: bytes, count: int, connections: int, until: asyncio.Future[Any] | None = None
) -> Storm:
    """`request` `count` times on `connections` kept-alive connections, one request in flight on each (as
    many SDK clients at once would), and on until `until` is done if it is given."""
    result = Storm()

    def more() -> bool:
        return result.sent < count or (until is not None and not until.done())

    started = time.perf_counter()
    await asyncio.gather(*(_connection(port, request, result, more) for _ in range(connections)))
    result.seconds = time.perf_counter() - started
    return result


async def steady(port: int, request: bytes, count: int, pause: float) -> Storm:
    """`request` `count` times on one kept-alive connection, one every `pause` seconds."""
    result = Storm()
    started = time.perf_counter()
    await _connection(port, request, result, lambda: result.sent < count, pause)
    result.seconds = time.perf_counter() - started
    return result


def run_storms(main: Callable[[], Awaitable[T]]) -> T:
    """`main()` on uvloop (the server's loop, several times asyncio's speed here), within 120 s."""
    import uvloop

    async def bounded() -> T:
        return await asyncio.wait_for(main(), timeout=120)

    return uvloop.run(bounded())


def _serve(
    home: Path, port: int, env: dict[str, str], log: Path, wrap: list[str] | None = None
) -> subprocess.Popen[bytes]:
    """`omniweave serve` on 127.0.0.1:`port` (under `wrap`, a command that execs the rest), its output in
    `log` (read by the tests: a pipe nobody reads would stall a server that logs a lot)."""
    full_env = {**os.environ, "OMNIWEAVE_HOME": str(home), **env}
    command = [*(wrap or []), *omniweave_cmd("serve", "--host", "127.0.0.1", "--port", str(port))]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"omniweave serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    stop(process)
    raise RuntimeError(f"omniweave serve did not become healthy within 30 s: {log.read_text()[-2000:]}")


def _server_faults(log: Path, expected: tuple[str, ...] = ()) -> list[str]:
    """The lines of the server's log other than its start and the `expected` ones: an exception, an error
    (uvicorn's and ours; ours come without a level name), a warning nobody expected."""
    lines = log.read_text(errors="replace").splitlines()
    known = ("omniweave collector listening on", *expected)
    return [line for line in lines if line.strip() and not line.startswith(known)]


def _check_storm(name: str, result: Storm, rate: float, burst: int, log: Path) -> None:
    """No broken connection, only 200 and 429, 200s within the token bucket's bound, every 429 with
    Retry-After and its reason."""
    assert not result.broken, (
        f"{name}: {len(result.broken)} connections broke (first: {result.broken[:5]}); "
        f"the server's log: {log.read_text(errors='replace')[-3000:]}"
    )
    statuses = Counter(answer.status for answer in result.answers)
    assert set(statuses) <= {200, 429}, (name, statuses, _server_faults(log))  # no 5xx, nothing else
    assert len(result.answers) == result.sent
    served = statuses[200]
    # the bucket: full at the start (its burst), plus `rate` a second for as long as the storm lasted (+1 s)
    assert burst <= served <= burst + rate * (result.seconds + 1), (name, served, result.seconds)
    limited = [answer for answer in result.answers if answer.status == 429]
    assert len(limited) == len(result.answers) - served > 0
    for answer in limited:
        assert answer.retry_after is not None and int(answer.retry_after) >= 1, answer.retry_after
        assert "requests per second" in orjson.loads(answer.body)["errors"][0]["reason"]


def _report(name: str, result: Storm, connections: int) -> str:
    statuses = Counter(answer.status for answer in result.answers)
    return (
        f"{name}: {result.sent:,} requests sent and {len(result.answers):,} answered in {result.seconds:.2f} s "
        f"= {result.rate:,.0f}/s on {connections} connections; {statuses[200]:,} served, "
        f"{statuses[429]:,} limited (429), {len(result.broken)} connections broken"
    )


def _write_keys(home: Path, *sources: str) -> list[str]:
    """A write key for each of `sources` (made in-process: three CLI runs cost seconds on a busy machine)."""
    runtime = Runtime(Settings(home=str(home)))
    try:
        return [runtime.store.create_source(source)[1] for source in sources]
    finally:
        runtime.close()


def _secret_keys(home: Path, *names: str) -> list[str]:
    """A secret key with every scope for each of `names` (as `omniweave keys secret --name` makes one)."""
    from omniweave.privacy.roles import KEY_SCOPES
    from omniweave.privacy.service.access import create_api_key

    runtime = Runtime(Settings(home=str(home)))
    try:
        return [create_api_key(runtime, name, list(KEY_SCOPES), actor="test").key for name in names]
    finally:
        runtime.close()


def test_2000_requests_a_second_from_one_write_key_get_429_and_another_key_is_unaffected(tmp_path: Path) -> None:
    """Item 2 on the collector: a storm from one write key (thousands of requests a second, the rate printed)
    against a limit of 50/s; the storm gets 200s up to its bucket and 429 with Retry-After after, never a 5xx
    nor a broken connection; a second key sending 10 a second all through the storm gets only 200s; the
    committer never restarts and the server logs no fault."""
    home = tmp_path / "home"
    busy_key, calm_key, warm_key = _write_keys(home, "busy", "calm", "warm-up")
    port = free_port()
    log = tmp_path / "serve.log"
    env = {"OMNIWEAVE_RATE_LIMIT_PER_SECOND": "50", "OMNIWEAVE_RATE_LIMIT_BURST": "100"}
    process = _serve(home, port, env, log)
    connections = 64

    def track(key: str, user: str, event: str) -> bytes:
        body = orjson.dumps({"userId": user, "event": event})
        return http_request("POST", port, "/v1/track", basic(key), body)

    try:

        async def storms() -> tuple[Storm, Storm, Storm]:
            # the server's first seconds are spent starting its loader and committer processes
            warm = await storm(port, track(warm_key, "w", "Warm"), 3_000, connections)
            calm_task = asyncio.ensure_future(steady(port, track(calm_key, "c", "Calm"), 20, 0.1))
            busy = await storm(port, track(busy_key, "b", "Busy"), 6_000, connections, until=calm_task)
            return warm, busy, await calm_task

        warm, busy, calm = run_storms(storms)
        print(_report("warm-up key", warm, connections))
        print(_report("one write key", busy, connections))
        print(_report("another key meanwhile", calm, 1))
        if busy.rate < 2_000:  # a rate is a time: not asserted, but not hidden either
            warnings.warn(f"the storm reached {busy.rate:,.0f} requests/s, under the issue's 2,000", stacklevel=1)
        _check_storm("warm-up key", warm, 50, 100, log)
        _check_storm("one write key", busy, 50, 100, log)
        assert not calm.broken and [answer.status for answer in calm.answers] == [200] * 20
        time.sleep(1.1)  # after Retry-After, the busy key is served again
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": basic(busy_key)}) as client:
            assert client.post("/v1/track", json={"userId": "b-again", "event": "Busy"}).status_code == 200
        health = _health(f"http://127.0.0.1:{port}")
        assert health["collector"]["restarts"] == 0
        # every 200 is an event in the inbox: the burst and refills of each key, 20 calm ones and the last one
        served = sum(Counter(a.status for a in s.answers)[200] for s in (warm, busy, calm)) + 1
        assert health["inbox_last_seq"] == served, (health, served)
    finally:
        stop(process)
    assert not _server_faults(log), _server_faults(log)


def test_a_storm_from_one_secret_key_gets_429_and_another_secret_key_is_unaffected(tmp_path: Path) -> None:
    """Item 2 on the REST API: the same with secret keys (api_rate_limit_per_second) on GET /v1/auth/me."""
    home = tmp_path / "home"
    busy_key, calm_key, warm_key = _secret_keys(home, "busy", "calm", "warm-up")
    port = free_port()
    log = tmp_path / "serve.log"
    env = {"OMNIWEAVE_API_RATE_LIMIT_PER_SECOND": "20", "OMNIWEAVE_API_RATE_LIMIT_BURST": "40"}
    process = _serve(home, port, env, log)
    connections = 32

    def me(key: str) -> bytes:
        return http_request("GET", port, "/v1/auth/me", f"Bearer {key}")

    try:

        async def storms() -> tuple[Storm, Storm, Storm]:
            warm = await storm(port, me(warm_key), 1_000, connections)
            calm_task = asyncio.ensure_future(steady(port, me(calm_key), 10, 0.2))
            busy = await storm(port, me(busy_key), 3_000, connections, until=calm_task)
            return warm, busy, await calm_task

        warm, busy, calm = run_storms(storms)
        print(_report("warm-up secret key", warm, connections))
        print(_report("one secret key", busy, connections))
        print(_report("another secret key meanwhile", calm, 1))
        _check_storm("warm-up secret key", warm, 20, 40, log)
        _check_storm("one secret key", busy, 20, 40, log)
        assert not calm.broken and [answer.status for answer in calm.answers] == [200] * 10
        time.sleep(1.1)
        answer = httpx.get(f"http://127.0.0.1:{port}/v1/auth/me", headers={"Authorization": f"Bearer {busy_key}"})
        assert answer.status_code == 200 and answer.json()["kind"] == "key"
    finally:
        stop(process)
    assert not _server_faults(log), _server_faults(log)


# --- 4: clock skew ------------------------------------------------------------------------------------


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[TestClient, Runtime, str]]:
    settings = Settings(home=str(tmp_path / "home"))
    runtime = Runtime(settings)
    _, write_key = runtime.store.create_source("web")
    with TestClient(create_app(settings)) as client:
        yield client, runtime, write_key
    runtime.close()


def _logged(runtime: Runtime, message_id: str) -> dict[str, Any]:
    load_all(runtime.store, runtime.log)
    rows = runtime.warehouse().sql(f"select * from events where message_id = '{message_id}'").to_pylist()
    assert len(rows) == 1, rows
    return rows[0]


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def test_a_client_clock_an_hour_slow_is_corrected_to_the_receipt_time(
    collector: tuple[TestClient, Runtime, str],
) -> None:
    client, runtime, write_key = collector
    slow = datetime.now(UTC) - timedelta(hours=1)
    event = {
        "userId": "u-1",
        "event": "Slow",
        "messageId": "slow-1",
        "originalTimestamp": iso(slow),
        "sentAt": iso(slow),
    }
    before = datetime.now(UTC)
    assert client.post("/v1/track", json=event, headers={"Authorization": basic(write_key)}).status_code == 200
    after = datetime.now(UTC)
    row = _logged(runtime, "slow-1")
    stamped = _as_datetime(row["timestamp"])
    assert before - timedelta(seconds=1) <= stamped <= after + timedelta(seconds=1)
    assert abs((stamped - _as_datetime(row["received_at"])).total_seconds()) <= 1.0


def test_three_days_in_the_future_without_sent_at_is_clamped_and_flagged(
    collector: tuple[TestClient, Runtime, str],
) -> None:
    client, runtime, write_key = collector
    ahead = datetime.now(UTC) + timedelta(days=3)
    near = datetime.now(UTC) + timedelta(hours=2)  # within the tolerance: kept as sent
    auth = {"Authorization": basic(write_key)}
    for message_id, moment in (("ahead-1", ahead), ("near-1", near)):
        body = {"userId": "u-1", "event": "Future", "messageId": message_id, "timestamp": iso(moment)}
        assert client.post("/v1/track", json=body, headers=auth).status_code == 200
    clamped = _logged(runtime, "ahead-1")
    assert abs((_as_datetime(clamped["timestamp"]) - _as_datetime(clamped["received_at"])).total_seconds()) <= 1.0
    assert _as_datetime(clamped["original_timestamp"]) == _as_datetime(iso(ahead))  # what the client said is kept
    assert orjson.loads(clamped["context"])["timestampClamped"] == iso(ahead)
    kept = _logged(runtime, "near-1")
    assert _as_datetime(kept["timestamp"]) == _as_datetime(iso(near))
    assert "timestampClamped" not in orjson.loads(kept["context"])


# --- 5: an identify after older tracks ---------------------------------------------------------------

NOW = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)


def _world_events() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(identifies, tracks): the identifies happened first, days before the tracks."""
    identifies, tracks = [], []
    for n in range(6):
        user, anon = f"cust-{n}", f"anon-{n}"
        identifies.append(
            {
                "type": "identify",
                "userId": user,
                "anonymousId": anon,
                "messageId": f"id-{n}",
                "timestamp": iso(NOW - timedelta(days=20)),
                "traits": {"email": f"cust{n}@example.org", "first_name": f"Name{n}"},
            }
        )
        for k in range(n % 3 + 1):
            tracks.append(
                {
                    "type": "track",
                    "anonymousId": anon,
                    "event": "Order Completed",
                    "messageId": f"order-{n}-{k}",
                    "timestamp": iso(NOW - timedelta(days=10 - k)),
                    "properties": {"revenue": 20 + 10 * k + n, "order_id": f"o-{n}-{k}"},
                }
            )
    return identifies, tracks


def _derive(runtime: Runtime) -> tuple[list[dict[str, Any]], set[tuple[str, str]]]:
    """Profiles (by anonymousId: every person has one) and segment memberships (segment, anonymousId) as of NOW."""
    from omniweave.identity.service.resolve import resolve
    from omniweave.profiles.service.build import build_profiles
    from omniweave.segments.service.evaluate import evaluate_segments

    load_all(runtime.store, runtime.log)
    resolve(runtime)
    build_profiles(runtime, now=NOW)
    evaluate_segments(runtime, now=NOW)
    warehouse = runtime.warehouse()
    users = {
        row["person_id"]: row["value"]
        for row in warehouse.sql("select person_id, value from identities where kind = 'anonymous_id'").to_pylist()
    }
    profiles = warehouse.sql("select * from profiles").to_pylist()
    volatile = {"person_id", "built_at", "updated_at"}
    by_user = sorted(
        ({"user": users[p["person_id"]], **{k: v for k, v in p.items() if k not in volatile}} for p in profiles),
        key=lambda p: str(p["user"]),
    )
    members = {
        (row["segment_id"], users[row["person_id"]])
        for row in warehouse.sql("select segment_id, person_id from segment_members").to_pylist()
    }
    return by_user, members


@pytest.mark.slow  # two profile builds (about 20 s each here)
def test_an_identify_after_older_tracks_gives_the_same_profiles_and_segments(tmp_path: Path) -> None:
    identifies, tracks = _world_events()
    results = []
    for name, batches in (("in order", [identifies + tracks]), ("late identify", [tracks, identifies])):
        settings = Settings(home=str(tmp_path / name))
        runtime = Runtime(settings)
        try:
            _, write_key = runtime.store.create_source("app")
            with TestClient(create_app(settings)) as client:
                for number, batch in enumerate(batches):
                    answer = client.post(
                        "/v1/batch", json={"batch": batch}, headers={"Authorization": basic(write_key)}
                    )
                    assert answer.status_code == 200, answer.text
                    if number < len(batches) - 1:  # identity runs while the identify is still on its way
                        from omniweave.identity.service.resolve import resolve

                        load_all(runtime.store, runtime.log)
                        resolve(runtime)
            results.append(_derive(runtime))
        finally:
            runtime.close()
    (profiles_a, members_a), (profiles_b, members_b) = results
    assert len(profiles_a) == 6 and members_a
    assert profiles_a == profiles_b
    assert members_a == members_b


# --- 6: a read-only warehouse while loading -------------------------------------------------------------


def _chattr(flag: str, path: Path) -> bool:
    done = subprocess.run(["chattr", "-R", flag, str(path)], capture_output=True)
    return done.returncode == 0


def _health(base: str) -> dict[str, Any]:
    return dict(httpx.get(f"{base}/health", timeout=10).json())


def _until(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not reached within {timeout} s: {check}")


def test_a_read_only_warehouse_keeps_the_events_in_the_inbox_until_writable(tmp_path: Path) -> None:
    """The warehouse folder made immutable (chattr +i: read-only even for root) while the loader runs."""
    home = tmp_path / "home"
    (write_key,) = _write_keys(home, "web")
    port = free_port()
    env = {"OMNIWEAVE_LOADER_INTERVAL_SECONDS": "0.1", "OMNIWEAVE_LOADER_MAX_DELAY_SECONDS": "0"}
    log = tmp_path / "serve.log"
    process = _serve(home, port, env, log)
    base = f"http://127.0.0.1:{port}"
    warehouse = home / "warehouse"
    run = uuid.uuid4().hex[:6]
    locked = False
    try:
        with httpx.Client(base_url=base, headers={"Authorization": basic(write_key)}, timeout=20) as client:

            def send(first: int, count: int) -> None:
                batch = [
                    {"type": "track", "userId": f"u{i}", "event": "E", "messageId": f"{run}-{i}"}
                    for i in range(first, first + count)
                ]
                assert client.post("/v1/batch", json={"batch": batch}).status_code == 200

            send(0, 20)
            _until(lambda: _health(base)["loader"]["lag"] == 0)
            locked = _chattr("+i", warehouse)
            if not locked:
                pytest.skip(
                    "chattr +i is not permitted here (needs CAP_LINUX_IMMUTABLE); cannot make a read-only folder"
                )
            send(20, 30)
            reported = _until(lambda: _health(base)["loader"]["last_error"])
            print(f"the loader reported: {reported}")
            assert "not permitted" in reported or "Permission" in reported or "Read-only" in reported, reported
            assert _until(lambda: f"the event-log loader failed: {reported}" in log.read_text())
            health = _health(base)
            assert health["loader"]["lag"] >= 30 and health["loader"]["restarts"] == 0
            assert health["collector"]["restarts"] == 0
            send(50, 10)  # still accepted: the inbox takes them
            _chattr("-i", warehouse)
            locked = False
            _until(lambda: (h := _health(base))["loader"]["lag"] == 0 and h["loader"]["last_error"] is None)
        runtime = Runtime(Settings(home=str(home)))
        try:
            rows = (
                runtime.warehouse()
                .sql(f"select message_id, count(*) as n from events where message_id like '{run}-%' group by 1")
                .to_pylist()
            )
        finally:
            runtime.close()
        assert len(rows) == 60 and {row["n"] for row in rows} == {1}
    finally:
        if locked:
            _chattr("-i", warehouse)
        stop(process)


# A full disk: a real ENOSPC. The warehouse folder is a small tmpfs of its own, filled by a file written
# until the kernel says "No space left on device"; deleting the file gives the space back. Two ways to
# mount it: as root, `mount -t tmpfs` on the folder (CI runs as root); otherwise in a user and mount
# namespace of the server's own (`unshare --user --map-root-user --mount`, allowed to ordinary users on
# Debian), where the test reaches the folder through /proc/<server pid>/root. RLIMIT_FSIZE is not a full
# disk (EFBIG, and SIGXFSZ kills the writer), nor are /dev/full or a shim around write(): the loader's own
# files must meet a filesystem that has no room.

_TMPFS_SIZE = "4m"


@functools.cache
def _full_disk_routes() -> dict[str, str | None]:
    """Each way to give the warehouse a small filesystem of its own: None if it works here, else why not."""
    routes: dict[str, str | None] = {}
    with tempfile.TemporaryDirectory() as folder:
        if os.geteuid() != 0:
            routes["tmpfs mount"] = "mounting a tmpfs needs root"
        else:
            tried = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", folder], capture_output=True)
            routes["tmpfs mount"] = None if tried.returncode == 0 else f"mount -t tmpfs: {tried.stderr.decode()}"
            if tried.returncode == 0:
                subprocess.run(["umount", folder], check=True)
    mount = 'mount -t tmpfs -o size=1m tmpfs "$0"'
    if shutil.which("unshare") is None:
        routes["user namespace"] = "no unshare command (util-linux)"
    else:
        tried = subprocess.run(
            ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", mount, tempfile.gettempdir()],
            capture_output=True,
        )
        routes["user namespace"] = None if tried.returncode == 0 else f"unshare: {tried.stderr.decode()}"
    return routes


def _fill(folder: Path) -> int:
    """Write zeros into `folder`/filler until the filesystem says ENOSPC; the bytes it took."""
    chunk = bytes(1 << 16)
    written = 0
    with open(folder / "filler", "wb", buffering=0) as out:
        while True:
            try:
                written += out.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return written


@pytest.mark.parametrize("route", ["tmpfs mount", "user namespace"])
def test_a_full_disk_keeps_the_events_in_the_inbox_until_space_returns(tmp_path: Path, route: str) -> None:
    """Item 6, a full disk: the warehouse on a tmpfs of 4 MB, filled to ENOSPC while the loader runs; the
    collector still takes events, the loader reports the error on /health and in the server's log, and once
    the filler is gone every event is in the log exactly once and no half-written file is left behind."""
    problem = _full_disk_routes()[route]
    if problem is not None:
        if IN_CI and all(_full_disk_routes().values()):
            pytest.fail(f"no way to make a full disk here: {_full_disk_routes()}")
        pytest.skip(problem)
    home = tmp_path / "home"
    (write_key,) = _write_keys(home, "web")
    warehouse = home / "warehouse"
    warehouse.mkdir(exist_ok=True)
    port = free_port()
    log = tmp_path / "serve.log"
    env = {
        "OMNIWEAVE_LOADER_INTERVAL_SECONDS": "0.1",
        "OMNIWEAVE_LOADER_MAX_DELAY_SECONDS": "0",
        "OMNIWEAVE_COMPACTION_INTERVAL_SECONDS": "0",
    }
    base = f"http://127.0.0.1:{port}"
    run = uuid.uuid4().hex[:6]
    mounted = False
    if route == "tmpfs mount":
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={_TMPFS_SIZE}", "tmpfs", str(warehouse)], check=True)
        mounted = True
        wrap: list[str] = []
    else:
        mount = f'mount -t tmpfs -o size={_TMPFS_SIZE} tmpfs "$0" && exec "$@"'
        wrap = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", mount, str(warehouse)]
    try:
        process = _serve(home, port, env, log, wrap)
        # the server's view of the folder (the same folder, unless it is in a namespace of its own)
        view = warehouse if mounted else Path(f"/proc/{process.pid}/root") / warehouse.relative_to("/")
        try:
            with httpx.Client(base_url=base, headers={"Authorization": basic(write_key)}, timeout=20) as client:

                def send(first: int, count: int) -> None:
                    batch = [
                        {"type": "track", "userId": f"u{i}", "event": "E", "messageId": f"{run}-{i}"}
                        for i in range(first, first + count)
                    ]
                    assert client.post("/v1/batch", json={"batch": batch}).status_code == 200

                send(0, 20)
                _until(lambda: _health(base)["loader"]["lag"] == 0)
                assert os.statvfs(view).f_blocks * os.statvfs(view).f_frsize <= 4 << 20  # the small filesystem
                took = _fill(view)
                assert os.statvfs(view).f_bavail == 0  # full: not a byte left for the loader
                print(f"the filler took {took:,} bytes; then: No space left on device")
                send(20, 30)
                reported = _until(lambda: _health(base)["loader"]["last_error"])
                print(f"the loader reported: {reported}")
                assert "No space left on device" in reported and "30 events stay in the inbox" in reported, reported
                logged = _until(lambda: [line for line in log.read_text().splitlines() if "No space left" in line])
                print(f"the server's log: {logged[0]}")
                health = _health(base)
                assert health["loader"]["lag"] >= 30 and health["loader"]["restarts"] == 0
                assert health["collector"]["restarts"] == 0
                send(50, 10)  # still accepted: the inbox takes them
                (view / "filler").unlink()  # the space returns
                _until(lambda: (h := _health(base))["loader"]["lag"] == 0 and h["loader"]["last_error"] is None)
                assert _until(lambda: "the event-log loader works again" in log.read_text())
            runtime = Runtime(Settings(home=str(home), warehouse_url=str(view)))
            try:
                rows = (
                    runtime.warehouse()
                    .sql(f"select message_id, count(*) as n from events where message_id like '{run}-%' group by 1")
                    .to_pylist()
                )
            finally:
                runtime.close()
            assert len(rows) == 60 and {row["n"] for row in rows} == {1}
            leftovers = [path.name for path in view.rglob("*") if path.is_file() and path.suffix != ".parquet"]
            assert not leftovers, leftovers  # no temporary file of a failed write stays behind
        finally:
            stop(process)
    finally:
        if mounted:
            subprocess.run(["umount", "--lazy", str(warehouse)], check=True)
    assert not _server_faults(log, ("the event-log loader",)), _server_faults(log, ("the event-log loader",))


def test_omniweave_load_into_a_read_only_warehouse_says_so_and_keeps_the_events(tmp_path: Path) -> None:
    """Item 6 from the command line: `omniweave load` into an immutable warehouse exits 2 with an error that
    says the log could not be written and the events stay in the inbox; they do (the loader's position has
    not moved), and the next `omniweave load` once it is writable moves each of them once."""
    home = tmp_path / "home"
    settings = Settings(home=str(home))
    runtime = Runtime(settings)
    runtime.store.create_source("web")
    run = uuid.uuid4().hex[:6]
    from omniweave.collect.emit import emit
    from omniweave.collect.status import inbox_progress

    emit(runtime.store, "web", [{"type": "track", "userId": "u0", "event": "E", "messageId": f"{run}-first"}])
    load_all(runtime.store, runtime.log)  # the warehouse exists, with one event
    emit(
        runtime.store,
        "web",
        [{"type": "track", "userId": f"u{i}", "event": "E", "messageId": f"{run}-{i}"} for i in range(25)],
    )
    warehouse = home / "warehouse"
    env = {**os.environ, "OMNIWEAVE_HOME": str(home)}
    if not _chattr("+i", warehouse):
        pytest.skip("chattr +i is not permitted here (needs CAP_LINUX_IMMUTABLE); cannot make a read-only folder")
    try:
        refused = subprocess.run(omniweave_cmd("load"), env=env, capture_output=True, text=True, timeout=120)
        print(f"omniweave load said: {refused.stderr.strip()}")
        assert refused.returncode == 2, (refused.stdout, refused.stderr)
        said = " ".join(refused.stderr.split())
        assert "the event log could not be written" in said and "25 events stay in the inbox" in said, said
        assert "Traceback" not in refused.stderr
        assert inbox_progress(runtime).lag == 25
    finally:
        _chattr("-i", warehouse)
    done = subprocess.run(omniweave_cmd("load"), env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "moved 25 events" in done.stdout, (done.stdout, done.stderr)
    assert inbox_progress(runtime).lag == 0
    rows = (
        runtime.warehouse()
        .sql(f"select message_id, count(*) as n from events where message_id like '{run}-%' group by 1")
        .to_pylist()
    )
    runtime.close()
    assert len(rows) == 26 and {row["n"] for row in rows} == {1}
