"""bench/profiles.py writes its event log with the `properties_<key>` columns filled by itself (so that 30 M
events need not be parsed back from their JSON): they must be exactly what the loader computes from the JSON."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from omniweave.storage.eventlog import EVENT_SCHEMA, PROPERTY_COLUMNS, with_flat_columns

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_bench_log_has_the_columns_the_loader_would_have_written() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import profiles
    finally:
        sys.path.remove(str(BENCH))
    people = profiles.make_people(1500, 4)
    rng = np.random.default_rng([4, 1, 0])
    chunk = profiles.Chunk(people, rng, 0, 5, 0, 0)
    share = np.asarray(list(profiles.MIX.values()))
    for kind, count in zip(profiles.MIX, rng.multinomial(40_000, share / share.sum()), strict=True):
        chunk.build(kind, int(count))
    table = chunk.table()
    assert table.schema.equals(EVENT_SCHEMA)
    loader = with_flat_columns(table.drop_columns(list(PROPERTY_COLUMNS)))
    for name in PROPERTY_COLUMNS:
        assert loader.column(name).equals(table.column(name)), name
    # every key the generator fills is filled somewhere (the comparison is not between two blank columns)
    filled = {name for name in PROPERTY_COLUMNS if pc.any(pc.not_equal(table.column(name), "")).as_py()}
    assert filled == set(PROPERTY_COLUMNS) - {"properties_total"}
