"""Floor areas and unit costs as datasets the importers load: the KPIs that need them compute with no options."""

from __future__ import annotations

from pathlib import Path

import pytest

from omniweave.collect.service import import_file
from omniweave.measure.service.kpis import kpi_table
from tests.measure.test_kpis import AREAS, COSTS, FEB, MAR, MONTHLY, _values, seeded  # noqa: F401


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_imported_stores_and_products_feed_the_kpis(seeded, tmp_path):  # noqa: F811
    stores = _write(
        tmp_path, "stores.csv", "store_id,name,floor_area_sqft,opened\nS1,Central,1000,2020-01-02\nS2,Station,500,\n"
    )
    products = _write(tmp_path, "products.csv", "sku,name,price,cost\nA,x,40.00,30.00\nB,y,20.00,10.00\n")
    assert import_file(seeded, "stores", stores).records_written == 2
    assert (
        import_file(seeded, "products", products)
        .describe()
        .endswith("2 imported as 2 products rows, 0 duplicate (already imported), 0 rejected")
    )
    got = {(p, k): v for (p, k, _), v in _values(kpi_table(seeded)).items()}
    for key in [
        (FEB, "sales_per_square_foot"),
        (MAR, "sales_per_square_foot"),
        (FEB, "cost_of_sales"),
        (MAR, "gross_margin"),
    ]:
        assert got[key] == pytest.approx(MONTHLY[key]), key
    # a new list replaces the old one whole
    import_file(seeded, "stores", _write(tmp_path, "one.csv", "store_id,floor_area_sqft\nS1,2000\n"))
    rows = seeded.warehouse().table("stores").to_pyarrow().to_pylist()
    assert [(r["store_id"], r["floor_area_sqft"]) for r in rows] == [("S1", 2000.0)]


def test_a_bad_reference_file_changes_nothing_and_says_where(seeded, tmp_path):  # noqa: F811
    import_file(seeded, "stores", _write(tmp_path, "stores.csv", "store_id,floor_area_sqft\nS1,1000\nS2,500\n"))
    bad = _write(tmp_path, "bad.csv", "store_id,floor_area_sqft\nS1,big\nS2,500\n")
    summary = import_file(seeded, "stores", bad)
    assert (summary.rows_imported, summary.rows_rejected) == (0, 1)
    assert summary.errors == ["bad.csv:row 1: field 'floor_area_sqft': not a number (got 'big')"]
    assert seeded.warehouse().table("stores").count().execute() == 2  # the last good list stays
