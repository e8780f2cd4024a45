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
