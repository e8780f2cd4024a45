"""Settings: built once at start-up from `omniweave.toml` and `OMNIWEAVE_*` variables, then passed down.

Precedence (highest first): environment variables, the TOML file, defaults. The TOML file is
`$OMNIWEAVE_CONFIG` if set, else `./omniweave.toml`, else `$OMNIWEAVE_HOME/omniweave.toml`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from omniweave.errors import ConfigError

ENGINE_NAMES = ("duckdb", "spark")
"""The warehouse engines (storage/engine.py holds what differs between them)."""


@dataclass(frozen=True)
class Settings:
    """Everything omniweave needs to know about where things live and how it behaves."""

    home: str = ".omniweave"
    warehouse_url: str = ""  # default: <home>/warehouse
    database_url: str = ""  # default: sqlite:///<home>/omniweave.db
    host: str = "127.0.0.1"
    port: int = 8787
    # collector
    max_event_bytes: int = 32 * 1024
    max_request_bytes: int = 500 * 1024
    rate_limit_per_second: float = 0.0  # requests per second per source; 0 = no limit
    rate_limit_burst: int = 0  # 0 = one second's worth
    dedupe_hours: float = 48.0
    # loader
    loader_batch_size: int = 50_000
    loader_interval_seconds: float = 0.5
    # While the collector takes more than loader_busy_events_per_second, the loader leaves the CPU
    # to it and loads only events older than loader_max_delay_seconds (0: never defer).
    loader_busy_events_per_second: float = 2_000.0
    loader_max_delay_seconds: float = 10.0
    # identity (used by later stages)
    default_region: str = "GB"
    # warehouse engine: "duckdb" (in-process) or "spark" (pip install 'omniweave[spark]'); the shells' --engine
    engine: Literal["duckdb", "spark"] = "duckdb"

    def __post_init__(self) -> None:
        if self.engine not in ENGINE_NAMES:
            raise ConfigError(f"engine = {self.engine!r}: expected one of {', '.join(ENGINE_NAMES)}")

    @property
    def home_path(self) -> Path:
        return Path(self.home)

    @property
    def resolved_warehouse_url(self) -> str:
        return self.warehouse_url or str(self.home_path / "warehouse")

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home_path / 'omniweave.db'}"

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some values changed (tests and shells use this)."""
        return replace(self, **changes)


_ENV_PREFIX = "OMNIWEAVE_"


def _coerce(name: str, raw: Any, typ: Any, where: str) -> Any:
    kind = typ if isinstance(typ, type) else {"int": int, "float": float, "str": str}.get(str(typ))
    try:
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {name} = {raw!r} is not a valid {getattr(kind, '__name__', kind)}") from exc


def config_section(
    env: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    home: str | None = None,
) -> tuple[Path, dict[str, Any]] | None:
    """The first config file found (`config_file`, else $OMNIWEAVE_CONFIG, ./omniweave.toml,
    <home>/omniweave.toml) and its `[omniweave]` table (or its top level); None if there is none.
    `home` (a settings' home) overrides $OMNIWEAVE_HOME."""
    env = os.environ if env is None else env
    if home is not None:
        env = {**env, _ENV_PREFIX + "HOME": home}
    if config_file:
        candidates = [Path(config_file)]
        if not candidates[0].is_file():
            raise ConfigError(f"config file {config_file} does not exist")
    else:
        home = env.get(_ENV_PREFIX + "HOME", Settings.home)
        candidates = [Path(p) for p in filter(None, [env.get(_ENV_PREFIX + "CONFIG")])]
        candidates += [Path("omniweave.toml"), Path(home) / "omniweave.toml"]
    for path in candidates:
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text())
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
            return path, data.get("omniweave", data)
    return None


def load_settings(env: Mapping[str, str] | None = None, config_file: str | os.PathLike[str] | None = None) -> Settings:
    """Build the settings from the TOML file and the environment (both optional)."""
    env = os.environ if env is None else env
    known = {f.name: f for f in fields(Settings)}
    values: dict[str, Any] = {}
    found = config_section(env, config_file)
    if found is not None:
        path, section = found
        for key, raw in section.items():
            if isinstance(raw, dict):
                continue  # sections for later stages (mappings, profiles.traits, identity rules, ...)
            if key not in known:
                raise ConfigError(f"{path}: unknown setting {key!r}; valid settings: {', '.join(sorted(known))}")
            values[key] = _coerce(key, raw, known[key].type, str(path))
    for name, f in known.items():
        raw = env.get(_ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = _coerce(name, raw, f.type, f"environment {_ENV_PREFIX + name.upper()}")
    return Settings(**values)
