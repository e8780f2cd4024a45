"""The reliability bar (issue 24 §6, items 2–6), on loopback and bounded in time.

    2  a rate limit per write key: 429 with Retry-After, no 5xx, other keys unaffected
    3  (the collector fuzz is tests/collect/test_fuzz.py; schemathesis is tests/shells/test_api.py)
    4  clock skew: an hour-slow client clock is corrected to the receipt time; three days in the future
       without sentAt is clamped to the receipt time and flagged (docs/collector.md, "Time rules")
    5  an identify arriving after older tracks gives the same profile and segments as in order
    6  a read-only warehouse while loading: the inbox keeps the events, the loader reports it (GET /health),
       nothing is lost or doubled once it is writable again

Item 1 (10 minutes at 1,500 events/s) is bench/soak.py, not a test.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from omniweave.collect.loader import load_all
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.shells.api.app import create_app
from tests.conftest import create_write_key, free_port, omniweave_cmd, start_server


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


async def _fire(base: str, auth: str, path: str, count: int, concurrency: int) -> tuple[list[httpx.Response], float]:
    """`count` requests from one key, `concurrency` at a time; the answers and the seconds they took."""
    answers: list[httpx.Response] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": auth}, timeout=30, limits=limits) as client:
        queue = iter(range(count))

        async def worker() -> None:
            for i in queue:
                if path == "/v1/track":
                    answers.append(await client.post(path, json={"userId": f"b{i}", "event": "Busy"}))
                else:
                    answers.append(await client.get(path))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return answers, time.perf_counter() - started


async def _steady(base: str, auth: str, path: str, count: int, pause: float) -> list[int]:
    """`count` requests from another key, one every `pause` seconds (well under its limit)."""
    statuses = []
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": auth}, timeout=30) as client:
        for i in range(count):
            if path == "/v1/track":
                answer = await client.post(path, json={"userId": f"c{i}", "event": "Calm"})
            else:
                answer = await client.get(path)
            statuses.append(answer.status_code)
            await asyncio.sleep(pause)
    return statuses


def _check_limited(answers: list[httpx.Response], seconds: float, rate: float, burst: int) -> None:
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {200, 429}, sorted(set(statuses))  # no 5xx, nothing else
    served = statuses.count(200)
    # the bucket: its burst, plus `rate` a second for as long as the storm lasted (+1 s of slack)
    assert burst <= served <= burst + rate * (seconds + 1), (served, seconds)
    limited = [answer for answer in answers if answer.status_code == 429]
    assert len(limited) == len(answers) - served > 0
    for answer in limited:
        assert int(answer.headers["retry-after"]) >= 1
        assert "requests per second" in answer.json()["errors"][0]["reason"]


def test_2000_requests_a_second_from_one_write_key_get_429_and_another_key_is_unaffected(tmp_path: Path) -> None:
    """Item 2 on the collector: a storm from one write key (httpx async, the rate printed) against a limit of
    50/s; the storm gets 200s up to its bucket and 429 with Retry-After after, never a 5xx; a second key
    sending 10 a second meanwhile gets only 200s; the committer never restarts."""
    home = tmp_path / "home"
    busy_key = create_write_key(home, "busy")
    calm_key = create_write_key(home, "calm")
    port = free_port()
    env = {"OMNIWEAVE_RATE_LIMIT_PER_SECOND": "50", "OMNIWEAVE_RATE_LIMIT_BURST": "100"}
    process, _ = start_server(home, port, env)
    base = f"http://127.0.0.1:{port}"
    try:

        async def both() -> tuple[tuple[list[httpx.Response], float], list[int]]:
            storm = _fire(base, basic(busy_key), "/v1/track", 4_000, 64)
            steady = _steady(base, basic(calm_key), "/v1/track", 20, 0.1)
            return await asyncio.gather(storm, steady)

        (answers, seconds), calm = asyncio.run(both())
        print(f"one write key: {len(answers)} requests in {seconds:.2f} s = {len(answers) / seconds:,.0f}/s")
        _check_limited(answers, seconds, 50, 100)
        assert calm == [200] * 20
        time.sleep(1.1)  # after Retry-After, the busy key is served again
        with httpx.Client(base_url=base, headers={"Authorization": basic(busy_key)}, timeout=20) as client:
            assert client.post("/v1/track", json={"userId": "b-again", "event": "Busy"}).status_code == 200
        health = httpx.get(f"{base}/health", timeout=10).json()
        assert health["collector"]["restarts"] == 0
    finally:
        stop(process)


def _secret_key(home: Path, name: str) -> str:
    env = {**os.environ, "OMNIWEAVE_HOME": str(home)}
    out = subprocess.run(
        omniweave_cmd("keys", "secret", "--name", name), env=env, check=True, capture_output=True, text=True
    ).stdout
    return out.strip().splitlines()[-1].strip()


def test_a_storm_from_one_secret_key_gets_429_and_another_secret_key_is_unaffected(tmp_path: Path) -> None:
    """Item 2 on the REST API: the same with secret keys (api_rate_limit_per_second) on GET /v1/auth/me."""
    home = tmp_path / "home"
    create_write_key(home, "web")  # makes the home
    busy_key = _secret_key(home, "busy")
    calm_key = _secret_key(home, "calm")
    port = free_port()
    env = {"OMNIWEAVE_API_RATE_LIMIT_PER_SECOND": "20", "OMNIWEAVE_API_RATE_LIMIT_BURST": "40"}
    process, _ = start_server(home, port, env)
    base = f"http://127.0.0.1:{port}"
    try:

        async def both() -> tuple[tuple[list[httpx.Response], float], list[int]]:
            storm = _fire(base, f"Bearer {busy_key}", "/v1/auth/me", 1_000, 32)
            steady = _steady(base, f"Bearer {calm_key}", "/v1/auth/me", 10, 0.2)
            return await asyncio.gather(storm, steady)

        (answers, seconds), calm = asyncio.run(both())
        print(f"one secret key: {len(answers)} requests in {seconds:.2f} s = {len(answers) / seconds:,.0f}/s")
        _check_limited(answers, seconds, 20, 40)
        assert calm == [200] * 10
        time.sleep(1.1)
        me = httpx.get(f"{base}/v1/auth/me", headers={"Authorization": f"Bearer {busy_key}"}, timeout=10)
        assert me.status_code == 200 and me.json()["kind"] == "key"
    finally:
        stop(process)


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
    write_key = create_write_key(home)
    port = free_port()
    env = {"OMNIWEAVE_LOADER_INTERVAL_SECONDS": "0.1", "OMNIWEAVE_LOADER_MAX_DELAY_SECONDS": "0"}
    process, _ = start_server(home, port, env)
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
