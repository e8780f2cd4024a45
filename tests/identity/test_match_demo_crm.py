"""`omniweave match` on the demo's own CRM file (issue 22 §3): the customer master of the session's demo
world (tests/conftest.py `demo_home`, 600 customers) holds one row per customer, so every pair the
match finds is wrong; the namesakes in it (same first and last name, different birth date, postcode,
e-mail and phone) were what the model used to merge at p ≈ 0.9999995."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from tests.conftest import omniweave_cmd


def test_match_on_the_demo_crm_file_merges_no_two_customers(demo_home: Path, tmp_path: Path) -> None:
    import subprocess

    source = demo_home / "demo" / "offline" / "customers.csv"
    rows = list(csv.DictReader(source.open(encoding="utf-8")))
    assert len({r["customer_number"] for r in rows}) == len(rows) >= 500  # one row per customer
    names = Counter((r["first_name"].lower(), r["last_name"].lower()) for r in rows)
    assert sum(n * (n - 1) // 2 for n in names.values()) >= 10  # namesakes there are
    output = tmp_path / "clusters.csv"
    done = subprocess.run(
        omniweave_cmd("match", str(source), "--output", str(output), "--id-column", "customer_number"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    clusters = Counter(r["cluster_id"] for r in csv.DictReader(output.open(encoding="utf-8")))
    merged = {cluster: n for cluster, n in clusters.items() if n > 1}
    assert not merged, f"{len(merged)} clusters merge distinct customers: {sorted(merged)[:5]}"
    assert sum(clusters.values()) == len(rows)
