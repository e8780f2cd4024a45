"""Issue 22 §7: the commands behind README's examples say what is wrong and behave the same run to run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from omniweave.errors import InputError
from omniweave.identity.service.resolve import resolve
from omniweave.measure.service.experiments import analyze, experiment_units
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.shells.cli.main import app
from tests.conftest import omniweave_cmd

TILL = (
    "transaction_id,store_id,timestamp,sku,product_name,category,quantity,unit_price,till_id,line_discount,"
    "coupon_code,loyalty_card,email,phone,customer_number,currency,payment_method\n"
)
GOOD = "R1,S001,2026-10-01T10:00:00Z,SKU-1,Boots,shoes,1,50.00,T1,,,LC1,a@example.com,,,GBP,card\n"
BAD = "R2,S001,2026-10-01T11:00:00Z,SKU-2,Socks,shoes,two,5.00,T1,,,LC2,b@example.com,,,GBP,card\n"


def test_import_help_lists_every_builtin_kind() -> None:
    result = CliRunner().invoke(app, ["import", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for kind in ("surveys", "stores", "products", "gift_cards", "till", "segment"):
        assert kind in text, kind


def test_import_exit_code_is_the_same_on_every_run(tmp_path: Path) -> None:
    """1 whenever a row is rejected (first run: one imported, one rejected; second: one duplicate, one
    rejected), 0 once the file is fixed, and the good row is imported once."""
    runner = CliRunner()
    env = {"OMNIWEAVE_HOME": str(tmp_path / "home")}
    path = tmp_path / "receipts.csv"
    path.write_text(TILL + GOOD + BAD)
    first = runner.invoke(app, ["import", "till", str(path)], env=env)
    second = runner.invoke(app, ["import", "till", str(path)], env=env)
    assert (first.exit_code, second.exit_code) == (1, 1), (first.output, second.output)
    assert "quantity" in first.output and "row" in first.output.lower()
    path.write_text(TILL + GOOD + BAD.replace(",two,", ",2,"))
    fixed = runner.invoke(app, ["import", "till", str(path)], env=env)
    assert fixed.exit_code == 0, fixed.output
    rt = Runtime(Settings(home=env["OMNIWEAVE_HOME"]))
    try:
        rows = rt.warehouse().sql("SELECT count(*) AS n FROM events WHERE event = 'Order Completed'").to_pylist()
    finally:
        rt.close()
    assert rows == [{"n": 2}]


def test_experiment_with_unresolved_exposures_says_to_resolve(demo_home: Path, tmp_path: Path) -> None:
    """Exposures that arrived after the last resolve belong to nobody yet: the analysis says to run resolve
    instead of reporting fewer arms; after resolve it analyses both."""
    home = tmp_path / "home"
    shutil.copytree(demo_home, home)
    runtime = Runtime(Settings(home=str(home)))
    try:
        events = []
        for n in range(40):
            events.append(
                {
                    "type": "track",
                    "event": "Experiment Viewed",
                    "anonymousId": f"late-visitor-{n:03d}",
                    "properties": {"experiment_id": "late-test", "variation_id": "A" if n % 2 else "B"},
                    "messageId": f"late-test-{n:03d}",
                    "timestamp": "2026-10-30T12:00:00Z",
                }
            )
        path = tmp_path / "late.jsonl"
        path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
        from omniweave.collect.service import import_file

        assert import_file(runtime, "segment", path).rows_imported == 40
        with pytest.raises(InputError, match=r"2 arm\(s\) in the log, but 40 .*run `omniweave resolve`"):
            experiment_units(runtime, "late-test")
        resolve(runtime)
        report = analyze(experiment_units(runtime, "late-test"), "late-test")
        assert sorted((a.name, a.units) for a in report.arms) == [("A", 20), ("B", 20)]
        # the demo's own A/B test is there, resolved, with both arms
        hero = analyze(experiment_units(runtime, "homepage-hero"), "homepage-hero", control="A")
        assert [a.name for a in hero.arms] == ["A", "B"] and min(a.units for a in hero.arms) > 100
    finally:
        runtime.close()


def test_install_hint_keeps_its_extra(tmp_path: Path) -> None:
    """The Spark engine without PySpark: the hint prints `omniweave[spark]` whole (not eaten as Rich markup).
    PySpark is hidden by an empty `pyspark` package first on the path, so `pyspark.sql` cannot be imported."""
    (tmp_path / "shadow" / "pyspark").mkdir(parents=True)
    (tmp_path / "shadow" / "pyspark" / "__init__.py").write_text("")
    env = {**os.environ, "OMNIWEAVE_HOME": str(tmp_path / "home"), "PYTHONPATH": str(tmp_path / "shadow")}
    done = subprocess.run(
        omniweave_cmd("query", "select 1", "--engine", "spark"), env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'omniweave[spark]'" in done.stderr
