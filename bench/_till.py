"""Till-file generator and import benchmark (called by `bench/ingest.py`).

`make_till_file(path, rows)` writes a realistic till export in the built-in `till` format of
docs/file-formats.md: line items of ~3 per transaction, some loyalty cards, e-mails, phones,
customer numbers and coupons. It is vectorised (numpy + pyarrow), so a million rows take a
second or two. `bench_import(rows)` imports such a file into a fresh home and returns the speed.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

_CATEGORIES = [
    "grocery",
    "bakery",
    "dairy",
    "drinks",
    "household",
    "beauty",
    "toys",
    "garden",
    "clothing",
    "electronics",
]
_PAYMENTS = ["card", "cash", "mobile", "voucher"]
_START = np.datetime64("2024-03-01T00:00:00", "s")


def _prefixed(prefix: str, numbers: np.ndarray, width: int = 0) -> pa.Array:
    text = pc.cast(pa.array(numbers), pa.string())
    if width:
        text = pc.utf8_lpad(text, width=width, padding="0")
    return pc.binary_join_element_wise(pa.scalar(prefix), text, "")


def _sometimes(values: pa.Array, keep: np.ndarray) -> pa.Array:
    """`values` where `keep` is true, null elsewhere."""
    return pc.if_else(pa.array(keep), values, pa.scalar(None, pa.string()))


def till_table(rows: int, seed: int = 0, days: int = 60, stores: int = 40, customers: int = 100_000) -> pa.Table:
    """A till export of exactly `rows` line items as an Arrow table of strings."""
    rng = np.random.default_rng(seed)
    n_tx = rows // 3 + rows // 50 + 10
    lines = rng.integers(1, 6, n_tx)  # 1..5 lines, mean 3
    while lines.sum() < rows:  # pragma: no cover - only for tiny row counts
        lines = lines + 1
    tx_of_row = np.repeat(np.arange(n_tx), lines)[:rows]
    n_tx = int(tx_of_row[-1]) + 1

    # one value per transaction, repeated onto its lines
    store = rng.integers(1, stores + 1, n_tx)
    seconds = rng.integers(0, days * 86_400, n_tx)
    seconds = seconds - seconds % 86_400 + 8 * 3600 + (seconds % 86_400) * 12 // 24  # 08:00-20:00
    times = _START + seconds.astype("timedelta64[s]")
    customer = rng.integers(1, customers + 1, n_tx)
    has_card = rng.random(n_tx) < 0.45
    has_email = rng.random(n_tx) < 0.15
    has_phone = rng.random(n_tx) < 0.10
    has_number = has_card & (rng.random(n_tx) < 0.4)
    has_coupon = rng.random(n_tx) < 0.10
    payment = rng.integers(0, len(_PAYMENTS), n_tx)

    def per_tx(values: pa.Array) -> pa.Array:
        return values.take(pa.array(tx_of_row))

    # one value per line
    product = rng.zipf(1.3, rows) % 2000 + 1
    quantity = np.where(rng.random(rows) < 0.8, 1, rng.integers(2, 7, rows))
    price_cents = (product * 7919) % 4900 + 99
    discounted = rng.random(rows) < 0.08
    discount_cents = np.where(discounted, price_cents * quantity // 10, 0)
    coupon_line = has_coupon[tx_of_row] & (np.arange(rows) == np.searchsorted(tx_of_row, tx_of_row))

    def cents(c):
        return pc.divide(pa.array(c, pa.float64()), 100.0)

    table = pa.table(
        {
            "transaction_id": per_tx(_prefixed("T", np.arange(1, n_tx + 1) + seed * 10_000_000, 9)),
            "store_id": per_tx(_prefixed("S", store, 3)),
            "till_id": per_tx(_prefixed("", store * 10 + store % 4 + 1)),
            "timestamp": per_tx(pc.strftime(pa.array(times), format="%Y-%m-%dT%H:%M:%SZ")),
            "sku": _prefixed("SKU-", product, 5),
            "product_name": _prefixed("Product ", product),
            "category": pa.array(np.array(_CATEGORIES)[product % len(_CATEGORIES)]),
            "quantity": pc.cast(pa.array(quantity), pa.string()),
            "unit_price": pc.cast(cents(price_cents), pa.string()),
            "line_discount": _sometimes(pc.cast(cents(discount_cents), pa.string()), discounted),
            "coupon_code": _sometimes(_prefixed("SPRING", product % 5 + 10), coupon_line),
            "loyalty_card": per_tx(_sometimes(_prefixed("LC", customer, 8), has_card)),
            "email": per_tx(
                _sometimes(
                    pc.binary_join_element_wise(_prefixed("customer", customer), pa.scalar("@example.com"), ""),
                    has_email,
                )
            ),
            "phone": per_tx(_sometimes(_prefixed("+4477009", customer, 5), has_phone)),
            "customer_number": per_tx(_sometimes(_prefixed("C", customer, 7), has_number)),
            "currency": pa.array(np.full(rows, "EUR")),
            "payment_method": per_tx(pa.array(np.array(_PAYMENTS)[payment])),
        }
    )
    return table


def make_till_file(path: str | Path, rows: int, seed: int = 0) -> Path:
    """Write a till CSV of exactly `rows` line items to `path` (fast, deterministic for a seed)."""
    path = Path(path)
    table = till_table(rows, seed=seed)
    # like most till exports: no quotes (no value holds a comma, a quote or a line break)
    pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(quoting_style="none"))
    return path


def bench_import(rows: int = 1_000_000, seed: int = 0) -> dict[str, Any]:
    """Import a `rows`-line till file into a fresh home; returns rows, seconds and rows/s."""
    from omniweave.collect.service import import_file
    from omniweave.runtime import Runtime
    from omniweave.settings import Settings

    with tempfile.TemporaryDirectory(prefix="omniweave-bench-") as tmp:
        file = make_till_file(Path(tmp) / "till.csv", rows, seed=seed)
        runtime = Runtime(Settings(home=str(Path(tmp) / "home")))
        try:
            runtime.store.ensure_source("import:till")  # opening the store is not part of an import
            started, cpu = time.perf_counter(), time.process_time()
            summary = import_file(runtime, "till", file)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        finally:
            runtime.close()
    return {
        "rows": rows,
        "rows_imported": summary.rows_imported,
        "events": summary.records_written,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),  # all threads; compare with seconds on a busy machine
        "rows_per_second": round(rows / seconds),
    }


if __name__ == "__main__":
    print(bench_import())
