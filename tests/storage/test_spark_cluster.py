"""The whole pipeline on a Spark standalone cluster gives what DuckDB gives (issue 27 §4).

A master and two workers (one core, 1 GB each) are started from the installed `pyspark` package, on
loopback and free ports; omniweave reaches them through the `spark_master` setting alone
(OMNIWEAVE_ENGINE=spark, OMNIWEAVE_SPARK_MASTER=spark://...), in a child process, because a Python
process holds one SparkContext and the test run's shared local session may already be in this one.
The executors read the warehouse from the shared path (this machine's disk, the same folder for
every worker). The cluster is stopped (each daemon's process group, executors included) however
the test ends.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from omniweave.runtime import Runtime
from omniweave.settings import load_settings
from tests.conftest import IN_CI, free_port, load_demo_log

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DERIVED = ("identity_state", "identities", "profiles", "recommendations", "segment_members", "segment_state")


def _spark_home() -> Path:
    """The installed pyspark package, which holds Spark (bin/spark-class, jars); skipped without it or without
    Java, but a failure in CI."""
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    missing = "pyspark (pip install 'omniweave[spark]')" if spec is None or spec.origin is None else None
    if missing is None and shutil.which("java") is None:
        missing = "Java 17 on the PATH"
    if missing:
        if IN_CI:
            pytest.fail(f"the Spark cluster test needs {missing} in CI")
        pytest.skip(f"the Spark cluster test needs {missing}")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent


def _workers_alive(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as response:
            state = json.load(response)
    except OSError:
        return 0
    return sum(1 for worker in state.get("workers", []) if worker.get("state") == "ALIVE")


@pytest.fixture(scope="module")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A Spark standalone master and two workers on loopback; yields (master URL, environment for a driver)."""
    spark_home = _spark_home()
    base = tmp_path_factory.mktemp("spark-cluster")
    conf = base / "conf"
    conf.mkdir()
    # what a driver of this cluster uses (spark-defaults.conf, as on any Spark installation): small executors
    # that fit the workers, few shuffle partitions for a small world, executors on this test's Python
    (conf / "spark-defaults.conf").write_text(
        "spark.executor.memory 512m\n"
        "spark.executor.cores 1\n"
        "spark.driver.memory 1g\n"
        "spark.sql.shuffle.partitions 2\n"
        f"spark.pyspark.python {sys.executable}\n"
    )
    env = {
        **os.environ,
        "SPARK_HOME": str(spark_home),
        "SPARK_CONF_DIR": str(conf),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_DAEMON_MEMORY": "256m",
        "SPARK_LOG_DIR": str(base / "logs"),
        "PYSPARK_PYTHON": sys.executable,
    }
    port, ui_port = free_port(), free_port()
    master_url = f"spark://127.0.0.1:{port}"
    spark_class = str(spark_home / "bin" / "spark-class")
    commands = [
        [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1"]
        + ["--port", str(port), "--webui-port", str(ui_port)],
        *(
            [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--port", "0"]
            + ["--webui-port", "0", "--cores", "1", "--memory", "1g", "--work-dir", str(base / f"work{i}"), master_url]
            for i in (1, 2)
        ),
    ]
    daemons: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for i, command in enumerate(commands):
            log = open(base / f"daemon{i}.log", "wb")  # noqa: SIM115 (closed below)
            logs.append(log)
            # each daemon leads its own process group: the executors a worker starts are in it too
            daemons.append(
                subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
            if i == 0:
                time.sleep(1)
        deadline = time.monotonic() + 180
        while _workers_alive(ui_port) < 2:
            exited = [d.args[1] for d in daemons if d.poll() is not None]
            if exited or time.monotonic() > deadline:
                tails = "\n".join((base / f"daemon{i}.log").read_text(errors="replace")[-1500:] for i in range(3))
                raise RuntimeError(f"the Spark cluster did not come up (exited: {exited}):\n{tails}")
            time.sleep(1)
        yield master_url, env
    finally:
        for daemon in reversed(daemons):
            _stop_group(daemon)
        for log in logs:
            log.close()


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the executors of a worker, should any outlive it
    process.wait()


def mixed_segment() -> Any:
    """A segment with every kind of rule the built-in ones may not use at once (a hash bucket, any, not, a
    trait that is null, an event with property filters), evaluated with them here and compared alone in tests/segments/test_evaluate.py."""
    from omniweave.segments import language as S

    return S.parse_segment(
        {
            "id": "mixed",
            "where": {
                "all": [
                    {"bucket": {"salt": "holdout", "from": 0, "to": 60}},
                    {
                        "any": [
                            {"trait": "preferred_channel", "in": ["email", "web"]},
                            {"trait": "total_revenue", "gt": 50.5},
                        ]
                    },
                    {"not": {"trait": "first_name", "is_null": True}},
                    {
                        "performed": "Order Completed",
                        "where": [{"property": "revenue", "gte": 20}, {"property": "channel", "ne": "store"}],
                    },
                ]
            },
        }
    )


def pipeline_results(home: Path) -> dict[str, Any]:
    """Run resolve, profiles, the built-in segments, KPIs and attribution paths on `home` with the engine the
    settings (environment) choose; return what each stage produced, in a form to compare."""
    from omniweave.identity.service.resolve import load_stitcher, resolve
    from omniweave.measure.service.kpis import kpi_table
    from omniweave.measure.service.paths import journeys_from_log
    from omniweave.profiles.service.build import build_profiles
    from omniweave.segments.service.evaluate import builtin_segments, evaluate_segments

    runtime = Runtime(load_settings(home=str(home)))
    mixed = mixed_segment()
    now = runtime.log.latest_event_time()
    assert now is not None
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        seconds[stage] = time.perf_counter() - clock
        clock = time.perf_counter()

    if runtime.engine.name == "spark":
        runtime.engine.spark_session()
        lap("session")
    summary = resolve(runtime)
    again = resolve(runtime).events  # 0: the anti-join of the new events against the resolved ones, on the engine
    lap("resolve")
    from tests.profiles.test_build import TRAITS  # every kind of configured trait (count, sum, last, distinct, …)

    build_profiles(runtime, now=now, traits=TRAITS)
    lap("profiles")
    evaluate_segments(runtime, {**builtin_segments(), "mixed": mixed}, now=now, record_changes=False)
    lap("segments")
    kpis = kpi_table(runtime, period="month", today=now.date())
    # per store and week, with the demo's stores and products (floor areas: sales per square foot; costs: margins)
    by_store = kpi_table(runtime, period="week", by="store", today=now.date())
    lap("kpis")
    journeys = journeys_from_log(runtime)
    by_campaign = journeys_from_log(runtime, by="campaign", lookback_days=90.0)
    lap("paths")

    def rows(dataset: str, *key: str) -> list[dict[str, Any]]:
        table = pq.read_table(runtime.log.dataset_path(dataset))
        return sorted(table.to_pylist(), key=lambda r: tuple(str(r[k]) for k in key))

    return {
        "engine": runtime.engine.name,
        "master": runtime.engine.spark_session().sparkContext.master if runtime.engine.name == "spark" else "",
        "events": summary.events,
        "again": again,
        "links": (summary.merges, summary.probabilistic_links),
        "persons": load_stitcher(runtime).persons(),
        "identities": rows("identities", "kind", "value"),
        "profiles": rows("profiles", "person_id"),
        "segments": rows("segment_members", "segment_id", "person_id"),
        "kpis": sorted(kpis.to_pylist(), key=lambda r: (str(r["period"]), r["kpi"], str(r["dimension_value"]))),
        "kpis_by_store": sorted(
            by_store.to_pylist(), key=lambda r: (str(r["period"]), r["kpi"], str(r["dimension_value"]))
        ),
        "paths": sorted((row.channels, row.conversions, row.value, row.nulls) for row in journeys.paths.rows),
        "paths_by_campaign": sorted(
            (row.channels, row.conversions, row.value, row.nulls) for row in by_campaign.paths.rows
        ),
        "untouched": (journeys.untouched_conversions, journeys.untouched_value),
        "spend": journeys.spend,
        "seconds": seconds,
    }


def _main() -> None:  # the driver in the child process: python -m tests.storage.test_spark_cluster HOME OUT
    home, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.write_bytes(pickle.dumps(pipeline_results(home)))


@pytest.fixture(scope="module")
def demo_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo world's event log (with its spend and stores), without anything derived from it."""
    home = tmp_path_factory.mktemp("cluster-demo")
    load_demo_log(home, customers=120, days=14, seed=11)
    assert not [dataset for dataset in DERIVED if (home / "warehouse" / dataset).exists()]
    return home


def test_the_pipeline_on_a_standalone_cluster_gives_what_duckdb_gives(
    spark_cluster: tuple[str, dict[str, str]], demo_log: Path, tmp_path: Path
) -> None:
    master_url, cluster_env = spark_cluster
    homes = {engine: tmp_path / engine for engine in ("duckdb", "spark")}
    for home in homes.values():
        shutil.copytree(demo_log, home)
    env = {**cluster_env, "OMNIWEAVE_ENGINE": "spark", "OMNIWEAVE_SPARK_MASTER": master_url}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    out = tmp_path / "spark.pickle"
    driver = tmp_path / "driver"
    driver.mkdir()
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "tests.storage.test_spark_cluster", str(homes["spark"]), str(out)],
        cwd=driver,  # anything Spark leaves in its working folder stays in the test's folder
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    spark = pickle.loads(out.read_bytes())
    assert spark["engine"] == "spark" and spark["master"] == master_url  # the cluster ran it, not local mode
    duck = pipeline_results(homes["duckdb"])
    assert duck["engine"] == "duckdb"
    for result in (spark, duck):
        laps = ", ".join(f"{stage} {s:.1f}" for stage, s in result["seconds"].items())
        print(f"\n{result['engine']} seconds: {laps}")
    print(f"both runs: {time.perf_counter() - started:.0f} s")

    assert duck["events"] == spark["events"] > 1000
    assert duck["again"] == spark["again"] == 0
    assert duck["links"] == spark["links"] and duck["links"][1] > 0, (duck["links"], spark["links"])
    assert len(duck["persons"]) > 100 and duck["persons"] == spark["persons"]
    stages = (
        "identities",
        "profiles",
        "segments",
        "kpis",
        "kpis_by_store",
        "paths",
        "paths_by_campaign",
        "untouched",
        "spend",
    )
    empty = [stage for stage in stages if not duck[stage]]
    assert not empty, f"empty on the demo world, so the comparison would prove nothing: {empty}"
    differ = {
        stage: _first_difference(duck[stage], spark[stage]) for stage in stages if not _same(duck[stage], spark[stage])
    }
    assert not differ, differ  # every stage at once, with its first difference (DuckDB's row, then Spark's)


def _same(a: Any, b: Any) -> bool:
    """Equal, but for floats, which may differ in the last bits: a sum over partitions that reach the driver in
    another order on a cluster (revenue, spend, path values) adds the same numbers in another order."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _first_difference(a: Any, b: Any) -> Any:
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return next(((x, y) for x, y in zip(a, b, strict=True) if not _same(x, y)), None)
    return (a, b) if not isinstance(a, list) else (len(a), len(b))


if __name__ == "__main__":
    _main()
