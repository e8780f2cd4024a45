"""A profile build by ranges of persons (issue 27: a million customers within a few GB) gives the profiles of
one build over everyone, on a demo-size retailer world (bench/profiles.py's generator: 2,000 persons, 60,000
events, with CLV, RFM, best hours and messaging lifts estimated over everyone)."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from omniweave.profiles.service.build import build_profiles
from omniweave.runtime import Runtime
from omniweave.settings import Settings

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(BENCH))
    try:
        import profiles
    finally:
        sys.path.remove(str(BENCH))
    home = tmp_path_factory.mktemp("chunks-world")
    profiles.generate(home, 2_000, 60_000, 5)
    return home


@pytest.fixture(scope="module")
def whole(world: Path) -> pa.Table:
    """The profiles of one build over everyone, without a memory limit of its own (half the machine)."""
    chunks, table = _built(world, chunks=1)
    assert chunks == 1
    # what is estimated over everyone is there to compare: CLV fitted, RFM ranked, best hours shrunk, lifts
    for name in ("expected_orders_12m", "clv_12m", "rfm_segment", "best_hour", "preferred_messaging_channel"):
        assert pc.count(table.column(name)).as_py() > 100, name
    return table


def _built(home: Path, memory_limit: str = "", chunks: int | None = None) -> tuple[int, pa.Table]:
    summary = build_profiles(Runtime(Settings(home=str(home), memory_limit=memory_limit)), traits=[], chunks=chunks)
    return summary.chunks, pq.read_table(Path(summary.path) / "profiles.parquet")


def _assert_same(whole: pa.Table, chunked: pa.Table) -> None:
    assert chunked.schema.equals(whole.schema)
    assert chunked.num_rows == whole.num_rows == 2_000
    for name in whole.column_names:
        assert chunked.column(name).equals(whole.column(name)), name


def test_a_build_under_a_small_memory_limit_gives_the_profiles_of_an_unlimited_build(
    world: Path, whole: pa.Table
) -> None:
    chunks, table = _built(world, memory_limit="256MB", chunks=4)
    assert chunks == 4
    _assert_same(whole, table)


def test_a_small_memory_limit_cuts_the_persons_into_more_ranges(world: Path) -> None:
    from omniweave.profiles.service.build import _default_chunks

    def ranges(limit: str) -> int:
        runtime = Runtime(Settings(home=str(world), memory_limit=limit))
        return _default_chunks(runtime, runtime.warehouse().table("events"))

    assert (ranges("8GB"), ranges("40MB")) == (1, 2)  # 60,000 events: 4,000,000 and 40,000 a range


def test_any_number_of_ranges_gives_the_same_profiles(world: Path, whole: pa.Table) -> None:
    _, table = _built(world, chunks=7)
    _assert_same(whole, table)
