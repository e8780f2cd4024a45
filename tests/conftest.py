"""Shared fixtures: small real worlds (a home folder, stores, a live collector process, PostgreSQL)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from omniweave.runtime import Runtime
from omniweave.settings import Settings

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES_ADMIN_URL = os.environ.get("OMNIWEAVE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with a `slow` test first, each file's tests in their order: with one file per worker at a time
    (scripts/test: --dist loadfile --no-loadscope-reorder), a long file started last keeps one worker busy
    while the other has nothing left to do."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # a stable sort keeps the order within each part


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=str(tmp_path / "home"))


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime(settings)
    yield rt
    rt.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """PostgreSQL on 127.0.0.1:5432; skipped locally when absent, a failure in CI."""
    try:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_URL.replace("postgresql://", "postgresql://", 1), connect_timeout=3):
            pass
    except Exception as exc:  # noqa: BLE001
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI but unreachable at {POSTGRES_ADMIN_URL}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc}")
    return POSTGRES_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    import psycopg

    name = f"ow_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = postgres_admin_url.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def opstore_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The operational store URL for both backends: every store test runs on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ops.db'}"
    return str(request.getfixturevalue("postgres_url"))


@dataclass
class LiveServer:
    """An `omniweave serve` process on a free port with its own home folder."""

    base_url: str
    write_key: str
    home: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str]

    def runtime(self) -> Runtime:
        return Runtime(Settings(home=str(self.home)))


def omniweave_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "omniweave", *args]


def start_server(
    home: Path, port: int, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    env = {**os.environ, "OMNIWEAVE_HOME": str(home), **(extra_env or {})}
    proc = subprocess.Popen(
        omniweave_cmd("serve", "--host", "127.0.0.1", "--port", str(port)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 90  # a loaded 2-core machine has taken over 30 s to start one
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"omniweave serve exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, env
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("omniweave serve did not become healthy within 90 s")


def create_write_key(home: Path, source: str = "test-source") -> str:
    env = {**os.environ, "OMNIWEAVE_HOME": str(home)}
    out = subprocess.run(
        omniweave_cmd("keys", "create", "--source", source), env=env, check=True, capture_output=True, text=True
    ).stdout
    return out.strip().splitlines()[-1].strip()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    home = tmp_path / "server-home"
    write_key = create_write_key(home)
    port = free_port()
    proc, env = start_server(home, port)
    yield LiveServer(f"http://127.0.0.1:{port}", write_key, home, proc, env)
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def on_engine(runtime: Runtime, engine: str, spark_session: Any = None) -> Runtime:
    """A Runtime over the same home as `runtime` whose warehouse engine is `engine` (Spark: on `spark_session`,
    the tests' shared session), as `--engine` or OMNIWEAVE_ENGINE would choose it."""
    settings = runtime.settings.with_overrides(engine=engine)
    return Runtime(settings, spark_session=spark_session if engine == "spark" else None)


@pytest.fixture(scope="session")
def spark_session():  # type: ignore[no-untyped-def]
    """One local Spark session for the whole test run (starting one takes ~20 s)."""
    pyspark_sql = pytest.importorskip("pyspark.sql")
    session = (
        pyspark_sql.SparkSession.builder.master("local[2]")
        .appName("omniweave-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def shared_demo_world(tmp_path_factory: pytest.TempPathFactory, name: str, **params: Any) -> Path:
    """A copy of the demo world `run_demo(**params)` makes, built once per test run: the first worker (xdist) to
    ask builds it in the run's shared temporary folder under a lock, every asker gets a copy of its own."""
    import fcntl
    import shutil

    from omniweave.demo.runner import run_demo

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    key = "-".join(f"{k}{v}" for k, v in sorted(params.items()))
    built = shared / f"demo-world-{key}"
    with open(shared / f"demo-world-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (built / "built.ok").exists():
            shutil.rmtree(built, ignore_errors=True)
            run_demo(Settings(home=str(built)), console=None, **params)
            (built / "built.ok").touch()
    home = tmp_path_factory.mktemp(name)
    shutil.copytree(built, home, dirs_exist_ok=True, ignore=shutil.ignore_patterns("built.ok"))
    return home


def load_demo_log(home: Path, customers: int, days: int, seed: int) -> Path:
    """The demo world `run_demo` makes in `home`, loaded by its bulk path, without the stages run_demo runs after
    loading (resolve, profiles, report, segments, the insight check): for tests that run some of them themselves.
    Returns the world's folder."""
    from omniweave.demo.runner import run_demo

    run_demo(Settings(home=str(home)), customers, days, seed, console=None, bulk=True, load_only=True)
    return home / "demo"


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A demo world (600 customers, 60 days, seed 7) with profiles and the built-in segments evaluated, shared by
    the segment tests; tests that change it work on a copy."""
    home = shared_demo_world(tmp_path_factory, "segments-demo", customers=600, days=60, seed=7)
    runtime = Runtime(Settings(home=str(home)))
    try:  # the demo evaluated the built-in segments
        assert runtime.warehouse().table("segment_members").count().to_pyarrow().as_py() > 0
    finally:
        runtime.close()
    return home
