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


# --- typed sections ------------------------------------------------------------------------------

SECTIONS_TOML = """\
port = 9001

[identity]
kinds = ["crm_id"]
limits = { crm_id = 1, email = 2 }
blocked = ["Guest@Shop.example"]

[[profiles.traits]]
name = "views"
agg = "count"
event = "Product Viewed"

[[profiles.traits]]
name = "gbp_revenue_90d"
agg = "sum"
property = "revenue"
where = { currency = "GBP" }
window_days = 90

[segments]
folder = "audiences"
"""


def test_sections_come_from_the_given_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The --config bug: the flat settings came from the given file, its sections were read from elsewhere."""
    from omniweave.identity.service.resolve import default_rules
    from omniweave.runtime import Runtime
    from omniweave.settings import IdentitySettings, TraitSpec

    monkeypatch.chdir(tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    config = project / "custom-name.toml"
    config.write_text(SECTIONS_TOML)
    settings = load_settings(env={"OMNIWEAVE_HOME": str(tmp_path / "home")}, config_file=config)
    assert settings.port == 9001 and settings.config_file == str(config)
    assert settings.identity == IdentitySettings(
        kinds=("crm_id",), limits=(("crm_id", 1), ("email", 2)), blocked=("Guest@Shop.example",)
    )
    assert settings.profiles.traits == (
        TraitSpec(name="views", agg="count", events=("Product Viewed",)),
        TraitSpec(
            name="gbp_revenue_90d", agg="sum", property="revenue", where=(("currency", "GBP"),), window_days=90.0
        ),
    )
    assert settings.segments_folder == project.resolve() / "audiences"  # relative to the config file
    rules = default_rules(Runtime(settings))
    assert rules.priorities.index("crm_id") < rules.priorities.index("device_id")
    assert rules.limits["crm_id"] == 1 and rules.limits["email"] == 2 and rules.limits["phone"] == 5
    assert "guest@shop.example" in rules.blocked


def test_sections_default_to_nothing_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from omniweave.settings import IdentitySettings, ProfilesSettings

    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={"OMNIWEAVE_HOME": "h"})
    assert settings.identity == IdentitySettings() and settings.profiles == ProfilesSettings()
    assert settings.segments_folder == Path("h") / "segments" and settings.config_file == ""
    # a config file without [segments]: segments/ beside it
    (tmp_path / "omniweave.toml").write_text("port = 1\n")
    assert load_settings(env={"OMNIWEAVE_HOME": "h"}).segments_folder == tmp_path.resolve() / "segments"


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path):
    config = tmp_path / "omniweave.toml"
    config.write_text(
        """\
port = "eighty"
colour = 3

[identity]
kinds = ["email", "crm_id"]
limits = { shoe = 1, crm_id = 0 }
blocked = "x"

[[profiles.traits]]
name = "Bad Name"
agg = "median"

[[profiles.traits]]
name = "ok"
agg = "sum"
window_days = -3

[segments]
folder = 3

[journeys]
x = 1
"""
    )
    with pytest.raises(ConfigError) as info:
        load_settings(env={"OMNIWEAVE_DEDUPE_HOURS": "soon"}, config_file=config)
    message = str(info.value)
    expected = [
        "port = 'eighty' is not a valid int",
        "unknown setting 'colour'",
        "unknown section [journeys]; valid sections: [identity], [profiles], [segments]",
        "[identity]: kinds: 'email' is a built-in kind",
        "[identity]: limits.shoe: unknown identifier kind; expected one of user_id, email",
        "[identity]: limits.crm_id: expected a whole number ≥ 1, got 0",  # crm_id is known: the kind was kept
        "[identity]: blocked must be a list of strings, got 'x'",
        "[profiles]: traits[0].name: trait 'Bad Name': name must be lower_snake_case",
        "[profiles]: traits[0].agg: trait 'Bad Name': agg must be one of count, sum",
        "[profiles]: traits[1].property: trait 'ok': agg 'sum' needs a property",
        "[profiles]: traits[1].window_days: trait 'ok': window_days must be a positive number of days, got -3",
        "[segments]: folder must be a path (a non-empty string), got 3",
        "environment OMNIWEAVE_DEDUPE_HOURS: dedupe_hours = 'soon' is not a valid float",
    ]
    missing = [fragment for fragment in expected if fragment not in message]
    assert not missing, message
    assert message.startswith(f"{len(expected)} problems in the configuration:")
    assert message.count(str(config)) == len(expected) - 1  # every problem of the file names the file


def test_a_section_that_is_not_a_table_and_duplicate_traits(tmp_path: Path):
    config = tmp_path / "omniweave.toml"
    config.write_text(
        'identity = 3\n[profiles]\ntraits = [{ name = "v", agg = "count" }, { name = "v", agg = "count" }]\n'
    )
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, config_file=config)
    assert "[identity]: must be a table ([identity]), got 3" in str(info.value)
    assert "traits[1].name: trait 'v' is declared twice" in str(info.value)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"[identity\nkinds = []\n", "not valid TOML"),
        (b'[profiles]\ntraits = [{ name = "v" agg = "count" }]\n', "not valid TOML"),
        (b"port = \xff\xfe\n", "not valid TOML: not UTF-8"),
    ],
)
def test_malformed_toml_names_the_file(tmp_path: Path, content: bytes, fragment: str):
    config = tmp_path / "omniweave.toml"
    config.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, config_file=config)
    assert fragment in str(info.value) and str(config) in str(info.value)


def test_settings_travel_to_child_processes_with_their_sections(tmp_path: Path):
    """collect/childproc sends Settings as one JSON line; the sections come back equal."""
    import json

    config = tmp_path / "omniweave.toml"
    config.write_text('host = "0.0.0.0"\n' + SECTIONS_TOML)
    settings = load_settings(env={}, config_file=config)
    assert Settings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    assert Settings.from_dict(json.loads(json.dumps(Settings().to_dict()))) == Settings()
    with pytest.raises(ConfigError, match=r"settings \[identity\]: limits.email: expected a whole number"):
        Settings.from_dict({"identity": {"limits": {"email": "many"}}})


# --- the --config bug, through the command line ---------------------------------------------------


def _small_home(home: Path) -> None:
    """Two anonymous visitors who typed the same shared e-mail; one of them viewed a product twice."""
    from datetime import UTC, datetime

    from omniweave.runtime import Runtime
    from omniweave.storage.eventlog import events_to_table
    from tests.segment_events import segment_event

    received = datetime(2026, 6, 1, tzinfo=UTC)
    shared = {"email": "guest@shop.example"}
    events = [
        segment_event(1, "2026-05-01T10:00:00Z", received_at=received, type="identify", anon="a1", traits=shared),
        segment_event(2, "2026-05-01T11:00:00Z", received_at=received, type="identify", anon="a2", traits=shared),
        segment_event(3, "2026-05-02T10:00:00Z", received_at=received, event="Product Viewed", anon="a1"),
        segment_event(4, "2026-05-03T10:00:00Z", received_at=received, event="Product Viewed", anon="a1"),
    ]
    runtime = Runtime(Settings(home=str(home)))
    runtime.log.append("events", events_to_table(events, "test"), "small")
    runtime.close()


def test_config_file_rules_and_traits_take_effect_in_the_cli(tmp_path: Path):
    import os
    import subprocess

    import pyarrow.parquet as pq

    from omniweave.runtime import Runtime
    from tests.conftest import omniweave_cmd

    home = tmp_path / "home"
    _small_home(home)
    config = tmp_path / "elsewhere" / "shop.toml"  # neither ./omniweave.toml nor <home>/omniweave.toml
    config.parent.mkdir()
    config.write_text(
        '[identity]\nblocked = ["guest@shop.example"]\n\n'
        '[[profiles.traits]]\nname = "views"\nagg = "count"\nevent = "Product Viewed"\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "OMNIWEAVE_CONFIG"} | {"OMNIWEAVE_HOME": str(home)}
    for command in (["resolve"], ["profiles", "build"]):
        done = subprocess.run(
            omniweave_cmd("--config", str(config), *command), env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
    runtime = Runtime(Settings(home=str(home)))
    rows = runtime.warehouse().sql("SELECT kind, value, person_id FROM identities").to_pylist()
    person = {(r["kind"], r["value"]): r["person_id"] for r in rows}
    assert person[("anonymous_id", "a1")] != person[("anonymous_id", "a2")]  # the blocked e-mail links no one
    assert person.get(("email", "guest@shop.example")) is None
    profiles = pq.read_table(runtime.log.dataset_path("profiles")).to_pylist()
    views = {p["person_id"]: p["views"] for p in profiles}
    assert views[person[("anonymous_id", "a1")]] == 2 and not views[person[("anonymous_id", "a2")]]
    runtime.close()


def test_channel_tables_are_typed_and_secrets_stay_in_the_environment(tmp_path):
    config = tmp_path / "shop.toml"
    config.write_text(
        "[channels]\npublic_url = 'https://shop.example.com/'\n"
        "[channels.email]\nenabled = true\nhost = 'smtp.example.com'\nport = 587\n"
        "[channels.sms]\naccount_sid = 'AC1'\nfrom_number = '+15005550006'\n"
    )
    s = load_settings(config_file=str(config), env={})
    assert s.channels.public_url == "https://shop.example.com"
    assert (s.channels.email.enabled, s.channels.email.host, s.channels.email.port) == (True, "smtp.example.com", 587)
    assert s.channels.sms.account_sid == "AC1" and not s.channels.whatsapp.enabled
    assert Settings.from_dict(s.to_dict()).channels == s.channels


def test_every_channel_problem_is_reported_at_once(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text(
        "[channels]\npublic_url = 'shop.example.com'\nbogus = 1\n"
        "[channels.email]\nport = '587'\npassword = 'hunter2'\nsecurity = 'ssl'\n"
        "[channels.push]\nenabled = 'yes'\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=str(config), env={})
    text = str(info.value)
    assert "6 problems" in text
    for expected in (
        "public_url must start with http:// or https://, got 'shop.example.com'",
        "unknown key 'bogus'",
        "port must be an integer, got '587'",
        "unknown key 'password' (secrets come from the environment only: set the variable named by password_env)",
        "security must be starttls, tls or plain, got 'ssl'",
        "[channels].push: enabled must be true or false, got 'yes'",
    ):
        assert expected in text
