"""Settings: TOML file, environment, defaults, and errors that say where they looked."""

from __future__ import annotations

from pathlib import Path

import pytest

from omniweave.errors import ConfigError
from omniweave.settings import Settings, load_settings


def test_defaults_need_no_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={})
    assert settings.home == ".omniweave"
    assert settings.resolved_warehouse_url == ".omniweave/warehouse"
    assert settings.resolved_database_url == "sqlite:///.omniweave/omniweave.db"


def test_file_then_environment(tmp_path: Path):
    config = tmp_path / "omniweave.toml"
    config.write_text('[omniweave]\nport = 9000\nrate_limit_per_second = 5\nhome = "/srv/ow"\n')
    settings = load_settings(env={"OMNIWEAVE_PORT": "9100"}, config_file=config)
    assert settings.port == 9100  # environment wins
    assert settings.rate_limit_per_second == 5.0
    assert settings.home == "/srv/ow"
    env = {
        "OMNIWEAVE_HOME": str(tmp_path / "h"),
        "OMNIWEAVE_DATABASE_URL": "postgresql://x@h/db",
        "OMNIWEAVE_WAREHOUSE_URL": "s3://bucket/wh",
    }
    settings = load_settings(env=env, config_file=config)
    assert settings.resolved_database_url == "postgresql://x@h/db"
    assert settings.resolved_warehouse_url == "s3://bucket/wh"


def test_home_file_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "omniweave.toml").write_text("port = 1234\n")
    assert load_settings(env={"OMNIWEAVE_HOME": "h"}).port == 1234


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("port = 'eighty'", "port = 'eighty' is not a valid int"),
        ("colour = 3", "unknown setting 'colour'"),
        ("port = [", "not valid TOML"),
    ],
)
def test_bad_configuration_is_reported_with_its_place(tmp_path: Path, text: str, fragment: str):
    config = tmp_path / "omniweave.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, config_file=config)
    assert fragment in str(info.value) and str(config) in str(info.value)


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError, match="OMNIWEAVE_PORT"):
        load_settings(env={"OMNIWEAVE_PORT": "x"}, config_file=None)


def test_missing_explicit_config_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(env={}, config_file=tmp_path / "nope.toml")


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        Settings().port = 1  # type: ignore[misc]
