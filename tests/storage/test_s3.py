"""The event log on object storage (issue 27 §4): with `warehouse_url = s3://bucket/prefix` the collector's
loader writes the log there and DuckDB reads it back through fsspec (s3fs), against a local S3-compatible
server (moto in server mode, a child process on a free loopback port, found through the standard AWS
variables). Resolve, profiles and KPIs over the bucket give what they give over a local folder.
"""

from __future__ import annotations

import base64
import importlib
import io
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from omniweave.runtime import Runtime
from omniweave.settings import Settings
from tests.conftest import IN_CI, free_port


def _need(module: str) -> Any:
    """`module` (from the dev extras: s3fs, boto3, moto); the test is skipped without it, but fails in CI."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if IN_CI:
            pytest.fail(f"{module} is required in CI (pip install -e '.[dev]'): {exc}")
        pytest.skip(f"{module} is not installed: pip install 'omniweave[s3]' 'moto[server]'")


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (stopped, with its process group, however the tests end)."""
    _need("moto.server")
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(endpoint + "/", timeout=2):
                    break
            except OSError as exc:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise RuntimeError(
                        f"moto did not start: {Path(log.name).read_text(errors='replace')[-2000:]}"
                    ) from exc
                time.sleep(0.2)
        yield endpoint
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new bucket on the server; the AWS variables point every S3 client of this process at it."""
    s3fs, boto3 = _need("s3fs"), _need("boto3")
    for name, value in {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    s3fs.S3FileSystem.clear_instance_cache()  # a cached filesystem would keep another test's server
    name = f"omniweave-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    yield name
    s3fs.S3FileSystem.clear_instance_cache()


def _events(start: datetime) -> list[dict[str, Any]]:
    """Three customers over three days: Ann browses anonymously, signs up, orders twice (once as a known user);
    Bob orders once; Cleo only reads pages."""

    def at(hours: float) -> str:
        return (start + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")

    def order(i: int, hours: float, revenue: float, **ids: str) -> dict[str, Any]:
        return {
            "type": "track",
            "event": "Order Completed",
            "messageId": f"order-{i}",
            "timestamp": at(hours),
            "properties": {"order_id": f"o{i}", "revenue": revenue, "currency": "GBP"},
            **ids,
        }

    def page(i: int, hours: float, **ids: str) -> dict[str, Any]:
        url = f"https://shop.example/p/{i}"
        return {
            "type": "page",
            "name": "Product",
            "messageId": f"page-{i}",
            "timestamp": at(hours),
            "properties": {"url": url},
            **ids,
        }

    return [
        page(1, 0, anonymousId="anon-ann"),
        page(2, 1, anonymousId="anon-ann"),
        {
            "type": "identify",
            "messageId": "identify-ann",
            "anonymousId": "anon-ann",
            "userId": "ann",
            "timestamp": at(2),
            "traits": {"email": "Ann@Example.com", "first_name": "Ann"},
        },
        order(1, 3, 42.5, anonymousId="anon-ann"),
        page(3, 26, userId="ann"),
        order(2, 27, 17.25, userId="ann"),
        {
            "type": "identify",
            "messageId": "identify-bob",
            "userId": "bob",
            "timestamp": at(30),
            "traits": {"email": "bob@example.com", "phone": "+44 7700 900123"},
        },
        order(3, 31, 99.0, userId="bob"),
        page(4, 50, anonymousId="anon-cleo"),
        page(5, 51, anonymousId="anon-cleo"),
        page(6, 52, anonymousId="anon-cleo"),
    ]


def _collect(settings: Settings, events: list[dict[str, Any]]) -> Runtime:
    """Post `events` to the collector (in two batches) and move the inbox into the log with the loader."""
    from fastapi.testclient import TestClient

    from omniweave.collect.loader import load_all
    from omniweave.shells.api.app import create_app

    runtime = Runtime(settings)
    _, write_key = runtime.store.create_source("web")
    headers = {
        "Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode(),
        "Content-Type": "application/json",
    }
    with TestClient(create_app(settings)) as client:
        for half in (events[:5], events[5:]):
            response = client.post("/v1/batch", content=orjson.dumps({"batch": half}), headers=headers)
            assert response.status_code == 200, response.text
            assert load_all(runtime.store, runtime.log) == len(half)
    return runtime


def _stages(runtime: Runtime, now: datetime) -> dict[str, Any]:
    from omniweave.identity.service.resolve import load_stitcher, resolve
    from omniweave.measure.service.kpis import kpi_table
    from omniweave.profiles.service.build import build_profiles

    resolve(runtime)
    build_profiles(runtime, now=now)
    kpis = kpi_table(runtime, period="day", today=now.date())

    def rows(dataset: str, *key: str) -> list[dict[str, Any]]:
        with runtime.log.fs.open(runtime.log.files(dataset)[0], "rb") as fh:
            table = pq.read_table(fh)
        return sorted(table.to_pylist(), key=lambda r: tuple(str(r[k]) for k in key))

    return {
        "persons": load_stitcher(runtime).persons(),
        "identities": rows("identities", "kind", "value"),
        "profiles": rows("profiles", "person_id"),
        "kpis": sorted(kpis.to_pylist(), key=lambda r: (str(r["period"]), r["kpi"], str(r["dimension_value"]))),
        "events": runtime.warehouse().sql("select message_id from events order by message_id").to_pylist(),
    }


def test_the_log_on_s3_gives_what_a_local_folder_gives(bucket: str, tmp_path: Path) -> None:
    start = (datetime.now(UTC) - timedelta(days=4)).replace(hour=6, minute=0, second=0, microsecond=0)
    now = start + timedelta(days=3)
    events = _events(start)
    on_s3 = _collect(Settings(home=str(tmp_path / "s3"), warehouse_url=f"s3://{bucket}/shop"), events)
    local = _collect(Settings(home=str(tmp_path / "local")), events)

    # what the loader wrote is in the bucket, read back without omniweave or s3fs: one row per event sent
    client = _need("boto3").client("s3")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="shop/events/")["Contents"]]
    assert keys and all(k.startswith("shop/events/date=") and k.endswith(".parquet") for k in keys)
    ids = []
    for key in keys:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        ids += pq.read_table(io.BytesIO(body)).column("message_id").to_pylist()
    assert sorted(ids) == sorted(e["messageId"] for e in events)
    days = {k.split("/")[2] for k in keys}
    assert days == {f"date={(start + timedelta(days=d)).date().isoformat()}" for d in range(3)}
    assert not (tmp_path / "s3" / "warehouse").exists()  # nothing of the log went to the local disk

    remote, here = _stages(on_s3, now), _stages(local, now)
    assert [r["message_id"] for r in remote["events"]] == sorted(e["messageId"] for e in events)
    assert len(here["persons"]) == 3  # Ann (anonymous pages, sign-up, two orders), Bob, Cleo
    for stage in ("persons", "identities", "profiles", "kpis", "events"):
        assert remote[stage] == here[stage], stage
    revenue = {(r["kpi"], str(r["period"])): r["value"] for r in here["kpis"] if r["kpi"] == "revenue_total"}
    assert sum(revenue.values()) == pytest.approx(42.5 + 17.25 + 99.0), revenue
    derived = {o["Key"].split("/")[1] for o in client.list_objects_v2(Bucket=bucket, Prefix="shop/")["Contents"]}
    assert {"events", "identities", "identity_state", "profiles"} <= derived
