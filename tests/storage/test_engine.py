"""The engine of a Runtime: chosen by the settings, its differences in storage/engine.py."""

from __future__ import annotations

import ibis
import pytest

from omniweave.errors import ConfigError
from omniweave.runtime import Runtime
from omniweave.settings import Settings, load_settings
from omniweave.storage.engine import DUCKDB, SPARK, Engine, dialect_of, engine_name, transpile


def test_the_engine_comes_from_the_settings(tmp_path):
    env = {"OMNIWEAVE_HOME": str(tmp_path / "home"), "OMNIWEAVE_ENGINE": "spark"}
    assert load_settings(env=env).engine == "spark"
    assert load_settings(env={"OMNIWEAVE_HOME": str(tmp_path / "home")}).engine == "duckdb"
    config = tmp_path / "omniweave.toml"
    config.write_text('engine = "spark"\n')
    assert load_settings(env={}, config_file=config).engine == "spark"
    with pytest.raises(ConfigError, match=r"unknown warehouse engine 'sqlite'.*OMNIWEAVE_ENGINE.*duckdb, spark"):
        load_settings(env={**env, "OMNIWEAVE_ENGINE": "sqlite"})
    with pytest.raises(ConfigError, match="expected one of duckdb, spark"):
        Settings(home=str(tmp_path), engine="postgres")  # type: ignore[arg-type]


def test_the_runtime_owns_one_engine(runtime):
    assert runtime.engine is runtime.engine and runtime.engine.name == "duckdb"
    warehouse = runtime.warehouse()
    assert warehouse.engine is runtime.engine and warehouse.dialect is DUCKDB
    assert dialect_of(warehouse.table("events")) is DUCKDB
    assert runtime.warehouse() is not warehouse  # a fresh view sees files written since


def test_a_spark_session_needs_the_spark_engine(settings):
    with pytest.raises(ConfigError, match="choose engine 'spark'"):
        _ = Runtime(settings, spark_session=object()).engine
    assert Engine("pyspark", spark_session=object()).dialect is SPARK
    assert engine_name("pyspark") == "spark"
    with pytest.raises(ConfigError, match=r"--engine: unknown warehouse engine 'duck'; expected 'duckdb' or 'spark'"):
        engine_name("duck", "--engine")


def test_in_memory_tables_run_on_duckdb():
    assert dialect_of(ibis.memtable({"a": [1]})) is DUCKDB


def test_sql_is_written_once_and_transpiled_for_spark():
    sql = "SELECT strftime(timestamp, '%Y-%m-%dT%H:%M:%S.%fZ') AS ts, json_extract_string(traits, '$.email') AS e FROM events"
    assert transpile(sql, DUCKDB) == sql
    spark = transpile(sql, SPARK)
    # letters outside the directives stay literal text (date_format would read T and Z as patterns)
    assert "DATE_FORMAT(timestamp, 'yyyy-MM-dd') || 'T' || DATE_FORMAT(timestamp, 'HH:mm:ss.SSSSSS') || 'Z'" in spark
    assert "GET_JSON_OBJECT(traits, '$.email') AS e" in spark
    assert transpile("SELECT strftime(d, '%Y-%m-%d') AS day FROM spend", SPARK) == (
        "SELECT DATE_FORMAT(d, 'yyyy-MM-dd') AS day FROM spend"
    )


@pytest.mark.spark
def test_transpiled_timestamp_text_is_the_same_on_spark(runtime, spark_session):
    """The identity extraction's timestamp text, run on both engines."""
    from datetime import UTC, datetime

    import pyarrow as pa

    from tests.conftest import on_engine

    table = pa.table({"t": pa.array([datetime(2026, 3, 1, 9, 5, 7, 123456, tzinfo=UTC)], pa.timestamp("us", "UTC"))})
    sql = "SELECT strftime(t, '%Y-%m-%dT%H:%M:%S.%fZ') AS ts FROM stamps"
    duck = runtime.warehouse().rows(sql, stamps=table)
    spark = on_engine(runtime, "spark", spark_session).warehouse().rows(sql, stamps=table)
    assert duck == spark == [{"ts": "2026-03-01T09:05:07.123456Z"}]
