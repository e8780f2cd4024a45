"""The root CLI loads a stage's command module only when one of its commands runs (shells/cli/lazy.py).

The table in shells/cli/main.py is checked against what the modules register (names and help), the
root help against the table, and the laziness itself in processes of their own: `omniweave --help`
imports no command module, a command imports its own module and not the others' (nor pandas or Ibis).
"""

from __future__ import annotations

import csv
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import omniweave.shells.cli as cli_package
from omniweave.shells.cli.lazy import commands_of, first_paragraph
from omniweave.shells.cli.main import COMMANDS


def command_modules() -> list[str]:
    """Every module of omniweave.shells.cli with a `register(app)`: the stages' command modules."""
    names = []
    for info in pkgutil.iter_modules(cli_package.__path__):
        path = Path(cli_package.__path__[0]) / f"{info.name}.py"
        if path.exists() and "\ndef register(" in path.read_text(encoding="utf-8"):
            names.append(info.name)
    return sorted(names)


def test_the_table_says_what_every_command_module_registers():
    modules = command_modules()
    assert {"collect", "identity", "measure", "privacy"} <= set(modules)
    registered: dict[str, tuple[str, str]] = {}
    for module in modules:
        for name, command in commands_of(module).items():
            assert name not in registered, f"{name!r} is registered by {registered[name][0]} and {module}"
            registered[name] = (module, first_paragraph(command.short_help or command.help))
    table = {entry.name: (entry.module, entry.help) for entry in COMMANDS}
    missing = sorted(set(registered) - set(table))
    assert not missing, f"commands registered but not in shells/cli/main.py COMMANDS: {missing}"
    assert not set(table) - set(registered), "COMMANDS names commands no module registers"
    for name, (module, help_text) in table.items():
        assert registered[name] == (module, help_text), name


def run_python(code: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMNIWEAVE_HOME": str(home), "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=False, timeout=300
    )


# Runs the CLI as `omniweave` does, then writes the loaded modules of interest to stderr's last line.
RUN_AND_LIST_MODULES = """
import json, sys
from omniweave.shells.cli.main import main
sys.argv = ["omniweave", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
loaded = sorted(m for m in sys.modules if m.startswith("omniweave.shells.cli.") or m in ("pandas", "ibis", "scipy"))
print(json.dumps({"code": code, "modules": loaded}), file=sys.stderr)
"""


def loaded_modules(done: subprocess.CompletedProcess[str]) -> tuple[object, set[str]]:
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


def test_root_help_lists_every_command_with_its_help_and_imports_no_command_module(tmp_path):
    done = run_python(RUN_AND_LIST_MODULES, tmp_path, "--help")
    code, modules = loaded_modules(done)
    assert code == 0, done.stderr
    lines = done.stdout.splitlines()
    for entry in COMMANDS:
        row = [line for line in lines if line.strip("│ ").startswith(entry.name + " ")]
        assert row, f"{entry.name} not listed in omniweave --help"
        assert " ".join(entry.help.split()[:6]) in " ".join(row[0].split()), entry.name
    assert {m for m in modules if m.startswith("omniweave.shells.cli.")} <= {
        "omniweave.shells.cli.main",
        "omniweave.shells.cli.lazy",
    }, modules


def test_a_command_loads_its_own_module_only_and_works(tmp_path):
    file = tmp_path / "paths.csv"
    rows = [
        ("search > email", 1, 10.5, 0),
        ("search > sms", 0, 0.0, 1),
        ("email > sms", 1, 20.0, 0),
        ("sms>email", 2, 7.25, 1),
        ("email", 1, 3.0, 2),
    ]
    with file.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "total_conversions", "total_conversion_value", "total_null"])
        writer.writerows(rows)
    done = run_python(
        RUN_AND_LIST_MODULES, tmp_path, "attribution", "--paths", str(file), "--model", "last_touch", "--format", "json"
    )
    code, modules = loaded_modules(done)
    assert code == 0, done.stderr
    # last touch: each row's conversions and value go to its last channel
    expected: dict[str, list[float]] = {}
    for path, conversions, value, _ in rows:
        last = path.split(">")[-1].strip()
        totals = expected.setdefault(last, [0.0, 0.0])
        totals[0] += conversions
        totals[1] += value
    credited = json.loads(done.stdout)["models"]["last_touch"]["channels"]
    assert {ch: [c["conversions"], c["value"]] for ch, c in credited.items() if c["conversions"] or c["value"]} == (
        expected
    )
    assert "omniweave.shells.cli.measure" in modules
    cli_modules = {m.rsplit(".", 1)[1] for m in modules if m.startswith("omniweave.shells.cli.")}
    others = cli_modules - {"main", "lazy", "common", "measure"}
    assert not others, f"attribution --paths imported other command modules: {others}"
    assert not modules & {"pandas", "ibis", "scipy"}, modules


def test_a_group_of_commands_and_a_typo_still_behave(tmp_path):
    done = run_python(RUN_AND_LIST_MODULES, tmp_path, "identity", "--help")
    code, modules = loaded_modules(done)
    assert code == 0, done.stderr
    assert "explain" in done.stdout and "split" in done.stdout
    assert "omniweave.shells.cli.identity" in modules
    done = run_python(RUN_AND_LIST_MODULES, tmp_path, "atribution")
    code, _ = loaded_modules(done)
    assert code == 2
    assert "Did you mean 'attribution'?" in done.stderr
