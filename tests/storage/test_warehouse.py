"""The warehouse through Ibis: the same expression gives the same answer on DuckDB and on Spark."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta

import ibis
import orjson
import pytest

from omniweave.collect.loader import load_all
from omniweave.errors import InputError
from omniweave.events.normalize import normalize_event
from omniweave.storage.query import run_query
from tests.conftest import omniweave_cmd, on_engine


def seed_log(runtime, n: int = 400) -> None:
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        raw = {
            "type": "track",
            "event": ["Product Viewed", "Order Completed", "Email Opened"][i % 3],
            "userId": f"u{i % 23}",
            "messageId": f"m{i}",
            "properties": {"revenue": round(i * 1.25, 2), "channel": ["web", "store", "app", "email"][i % 4]},
        }
        event = normalize_event(raw, received_at=t0 + timedelta(hours=i))
        rows.append(("s1", event["messageId"], 0.0, orjson.dumps(event)))
    runtime.store.append(rows)
    load_all(runtime.store, runtime.log)


def daily_summary(events: ibis.Table) -> ibis.Table:
    """An aggregate written once in Ibis: per day, channel and event: events, people, revenue."""
    revenue = events.properties.re_extract(r'"revenue":\s*([0-9.]+)', 1).nullif("").cast("float64")
    return (
        events.group_by([events.date.cast("string").name("day"), "channel", events.event.fill_null("-").name("event")])
        .aggregate(
            events=events.count(), people=events.user_id.nunique(), revenue=ibis.coalesce(revenue.sum(), 0).round(2)
        )
        .order_by(["day", "channel", "event"])
    )


def test_duckdb_reads_the_log(runtime):
    seed_log(runtime)
    result = daily_summary(runtime.warehouse().table("events")).to_pyarrow()
    assert sum(result.column("events").to_pylist()) == 400
    assert len({d for d in result.column("day").to_pylist()}) == 17  # 400 hours


def test_empty_warehouse_has_its_tables(runtime):
    warehouse = runtime.warehouse()
    assert warehouse.table("events").count().execute() == 0
    assert warehouse.sql("select count(*) as n from spend").column("n").to_pylist() == [0]


def spend_summary(spend: ibis.Table) -> ibis.Table:
    return (
        spend.group_by(["channel", "campaign"])
        .aggregate(
            days=spend.date.nunique(), spend=spend.spend.sum().round(2), clicks=ibis.coalesce(spend.clicks.sum(), 0)
        )
        .order_by(["channel", "campaign"])
    )


@pytest.mark.spark
def test_same_aggregate_on_duckdb_and_spark_over_the_demo_log(runtime, spark_session):
    from omniweave.demo.runner import run_demo

    run_demo(runtime.settings, customers=150, days=10, seed=5, console=None)
    duck, spark = runtime.warehouse(), on_engine(runtime, "spark", spark_session).warehouse()
    on_duckdb = daily_summary(duck.table("events")).to_pandas()
    on_spark = daily_summary(spark.table("events")).to_pandas()
    assert len(on_duckdb) > 50 and on_duckdb["revenue"].sum() > 0
    assert {"store", "web", "email"} <= set(on_duckdb["channel"])
    assert on_duckdb.to_dict("records") == on_spark.to_dict("records")
    spend_duck = spend_summary(duck.table("spend")).to_pandas()
    assert len(spend_duck) > 0
    assert spend_duck.to_dict("records") == spend_summary(spark.table("spend")).to_pandas().to_dict("records")


def test_query_command_prints_json_and_csv(runtime):
    seed_log(runtime, n=30)
    env = {"OMNIWEAVE_HOME": runtime.settings.home}
    import os

    out = subprocess.run(
        omniweave_cmd(
            "query", "select event, count(*) as n from events group by event order by event", "--format", "json"
        ),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == [
        {"event": "Email Opened", "n": 10},
        {"event": "Order Completed", "n": 10},
        {"event": "Product Viewed", "n": 10},
    ]
    out = subprocess.run(
        omniweave_cmd("query", "select count(*) as n from events", "--format", "csv"),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == ["n", "30"]


def test_bad_sql_is_an_input_error(runtime):
    with pytest.raises(InputError, match="query failed"):
        run_query(runtime.settings, "select nope from events")


def test_warehouse_on_any_fsspec_url(tmp_path):
    """OMNIWEAVE_WAREHOUSE_URL may point anywhere fsspec reaches (here: its in-memory filesystem)."""
    from omniweave.runtime import Runtime
    from omniweave.settings import Settings

    runtime = Runtime(Settings(home=str(tmp_path / "h"), warehouse_url="memory://omniweave-test-wh"))
    seed_log(runtime, n=48)
    assert runtime.log.files("events") and not (tmp_path / "h" / "warehouse").exists()
    assert runtime.warehouse().sql("select count(*) as n from events").column("n").to_pylist() == [48]


def test_latest_event_time_from_the_footers_equals_a_scan(runtime):
    assert runtime.log.latest_event_time() is None  # no events yet
    seed_log(runtime)
    scanned = runtime.warehouse().table("events").timestamp.max().execute().to_pydatetime()
    assert runtime.log.latest_event_time() == scanned == datetime(2026, 5, 1, tzinfo=UTC) + timedelta(hours=399)


def test_latest_event_time_is_none_when_a_file_has_no_statistics(runtime):
    import pyarrow.parquet as pq

    seed_log(runtime)
    files = runtime.log.files("events")
    expected = runtime.log.latest_event_time()
    for path in (files[0], files[-1]):
        with runtime.log.fs.open(path, "rb") as fh:
            table = pq.read_table(fh)
        with runtime.log.fs.open(path, "wb") as fh:
            pq.write_table(table, fh, write_statistics=False)
        if path == files[0]:
            # only the latest day's files are read: each event lies in the partition of its timestamp's day
            assert runtime.log.latest_event_time() == expected
    assert runtime.log.latest_event_time() is None  # build_profiles then scans the column


def test_array_lambdas_run_on_the_warehouse_engine(runtime):
    """Ibis writes `map`/`filter` as `x -> ...` lambdas; DuckDB 2 reads them only with the setting
    storage.duckdb_compat gives every warehouse connection."""
    warehouse = runtime.warehouse()
    t = ibis.memtable({"xs": [[1, 2, 3], [], None]})
    expr = t.select(doubled=t.xs.map(lambda x: x * 2), odd=t.xs.filter(lambda x: x % 2 == 1))
    result = warehouse.con.to_pyarrow(expr)
    assert result.column("doubled").to_pylist() == [[2, 4, 6], [], None]
    assert result.column("odd").to_pylist() == [[1, 3], [], None]
    batches = warehouse.con.to_pyarrow_batches(expr, chunk_size=2).read_all()  # DuckDB 2: fetch_record_batch
    assert batches.num_rows == 3
    assert warehouse.con.sql("SELECT 41 + 1 AS n").to_pyarrow().column("n").to_pylist() == [42]


def test_a_failed_dataset_write_leaves_the_old_dataset_and_no_temporary_file(runtime):
    """write_dataset goes through the log's write-then-rename: a write that fails half-way (here a column
    Parquet cannot hold) keeps the previous dataset and leaves no `.tmp-` file behind (they held space and,
    for derived datasets, personal data)."""
    import os

    import pyarrow as pa

    from omniweave.storage.warehouse import write_dataset

    write_dataset(runtime.log, "scratch", pa.table({"a": [1, 2]}))
    bad = pa.table({"a": pa.array([None], pa.month_day_nano_interval())})
    with pytest.raises(pa.ArrowNotImplementedError):
        write_dataset(runtime.log, "scratch", bad)
    folder = runtime.log.dataset_path("scratch")
    assert sorted(os.listdir(folder)) == ["scratch.parquet"]
    assert runtime.warehouse().table("scratch").to_pyarrow().column("a").to_pylist() == [1, 2]
