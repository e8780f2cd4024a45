"""The CLI's own commands (keys, load, errors); import/demo/serve are tested beside their services."""

from __future__ import annotations

import os
import subprocess

from omniweave.runtime import Runtime
from omniweave.settings import Settings
from tests.conftest import omniweave_cmd


def run(home, *args, check=True):
    env = {**os.environ, "OMNIWEAVE_HOME": str(home)}
    return subprocess.run(omniweave_cmd(*args), env=env, capture_output=True, text=True, check=check)


def test_keys_create_prints_the_write_key_last(tmp_path):
    out = run(tmp_path, "keys", "create", "--source", "web shop").stdout
    key = out.strip().splitlines()[-1]
    assert key.startswith("wk_")
    assert Runtime(Settings(home=str(tmp_path))).store.source_for_write_key(key)
    assert "web shop" in run(tmp_path, "keys", "list").stdout


def test_duplicate_source_is_a_clear_error(tmp_path):
    run(tmp_path, "keys", "create", "--source", "app")
    result = run(tmp_path, "keys", "create", "--source", "app", check=False)
    assert result.returncode == 2
    assert "already exists" in result.stderr


def test_bad_config_is_reported(tmp_path):
    (tmp_path / "omniweave.toml").write_text("port = 'x'\n")
    result = run(tmp_path, "--config", str(tmp_path / "omniweave.toml"), "load", check=False)
    assert result.returncode != 0
    assert "port" in result.stderr + result.stdout


def test_load_on_an_empty_inbox(tmp_path):
    assert "moved 0 events" in run(tmp_path, "load").stdout


def test_resolve_on_an_empty_log(tmp_path):
    out = run(tmp_path, "resolve").stdout
    assert "0 new events" in out and "0 persons" in out


# --- every command's --format csv|json parses; tables fit 80 columns --------------------------------------

import csv  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402

import pytest  # noqa: E402


def run80(home, *args):
    env = {**os.environ, "OMNIWEAVE_HOME": str(home), "COLUMNS": "80"}
    return subprocess.run(omniweave_cmd(*args), env=env, capture_output=True, text=True, check=False, timeout=600)


@pytest.fixture(scope="module")
def small_home(tmp_path_factory):
    """A small demo world built by `omniweave demo` at 80 columns (its report is checked for cut cells)."""
    home = tmp_path_factory.mktemp("cli-formats") / "home"
    done = run80(home, "demo", "--customers", "200", "--days", "28", "--seed", "3", "--no-serve")
    assert done.returncode == 0, done.stderr[-3000:]
    transactions = home.parent / "transactions.csv"
    transactions.write_text(
        "customer,day,amount\n"
        + "".join(
            f"c{c},2026-0{1 + (c * k) % 6}-{10 + k:02d},{10 + c * k}\n"
            for c in range(1, 30)
            for k in range(1, c % 4 + 2)
        )
    )
    return home, done.stdout


def invoke80(home, *args):
    """The CLI in this process (the format checks run many commands: no interpreter start for each)."""
    from typer.testing import CliRunner

    from omniweave.shells.cli.main import app

    return CliRunner().invoke(app, ["--home", str(home), *args], env={"COLUMNS": "80"})


def _person(home) -> str:
    done = invoke80(home, "query", "select person_id from profiles order by person_id limit 1", "--format", "csv")
    assert done.exit_code == 0, done.output
    return done.stdout.splitlines()[1]


COMMANDS = {
    "query": ("query", "select channel, count(*) as n from events group by channel order by channel"),
    "attribution": ("attribution",),
    "attribution --paths": ("attribution", "--paths", "{paths}"),
    "kpis": ("kpis", "--by", "channel"),
    "budget": ("budget", "--bootstrap", "20", "--period-days", "5"),
    "experiments list": ("experiments", "list"),
    "profile show": ("profile", "show", "{person}"),
    "segments list": ("segments", "list"),
    "segments evaluate": ("segments", "evaluate"),
    "clv fit": (
        "clv",
        "fit",
        "--transactions",
        "{transactions}",
        "--customer-col",
        "customer",
        "--date-col",
        "day",
        "--value-col",
        "amount",
    ),
}


def _args(home, command: tuple[str, ...]) -> list[str]:
    paths = home.parent / "paths.csv"
    if not paths.exists():
        paths.write_text("path,total_conversions,total_conversion_value,total_null\nemail > [sms],3,30,1\nqr,1,5,0\n")
    values = {"paths": str(paths), "transactions": str(home.parent / "transactions.csv")}
    if "{person}" in command:
        values["person"] = _person(home)
    return [part.format(**values) for part in command]


@pytest.mark.parametrize("fmt", ["csv", "json"])
@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_with_a_format_prints_it_parseably(small_home, name: str, fmt: str) -> None:
    home, _ = small_home
    done = invoke80(home, *_args(home, COMMANDS[name]), "--format", fmt)
    assert done.exit_code == 0, done.output[-3000:]
    if fmt == "json":
        json.loads(done.stdout)
        return
    rows = list(csv.reader(io.StringIO(done.stdout)))
    assert rows, f"{name}: no CSV header"
    header = rows[0]
    assert len(header) >= 2 and all(cell and not set(cell) & set("│┃━─") for cell in header), header
    assert all(len(row) == len(header) for row in rows), f"{name}: rows of different lengths"


@pytest.mark.parametrize(
    "name", ["attribution", "attribution --paths", "kpis", "budget", "profile show", "segments list"]
)
def test_tables_fit_80_columns_without_a_cut_cell(small_home, name: str) -> None:
    home, demo_report = small_home
    done = run80(home, *_args(home, COMMANDS[name]))
    assert done.returncode == 0, done.stderr[-3000:]
    for out in (done.stdout, demo_report):
        assert "…" not in out
        assert max(len(line) for line in out.splitlines()) <= 80
    if name == "attribution --paths":
        assert "[sms]" in done.stdout  # a bracketed channel name is not eaten as markup


def test_the_demo_report_fits_80_columns(small_home) -> None:
    _, report = small_home
    assert "attribution of" in report and "headline KPIs per month" in report
    assert "…" not in report
    assert max(len(line) for line in report.splitlines()) <= 80
