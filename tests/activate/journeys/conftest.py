"""A small real world for the journey engine: identities and profiles built from identify events, on SQLite
or PostgreSQL, with the engine's clock at a fixed weekday noon (outside quiet hours)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from omniweave.profiles.service.build import build_profiles, write_identities
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.storage.eventlog import events_to_table
from tests.segment_events import segment_event

NOON = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)  # a Tuesday


class Clock:
    """The engine's clock, moved by the test."""

    def __init__(self, at: float):
        self.at = at

    def __call__(self) -> float:
        return self.at


def build_world(runtime: Runtime, n: int) -> list[str]:
    """`n` persons P1..Pn (user ids u1..un) with an e-mail address and e-mail consent; their person ids."""
    events, identities = [], []
    for i in range(1, n + 1):
        traits: dict[str, Any] = {"first_name": f"N{i}", "email": f"p{i}@example.com", "email_opt_in": True}
        if i == 1:
            traits["birthday"] = "1990-06-30"
        events.append(
            segment_event(i, "2026-06-01T09:00:00Z", received_at=NOON, type="identify", user=f"u{i}", traits=traits)
        )
        identities += [("user_id", f"u{i}", f"P{i}"), ("email", f"p{i}@example.com", f"P{i}")]
    runtime.log.append("events", events_to_table(events, "test"), "world")
    write_identities(runtime, identities)
    build_profiles(runtime, now=NOON, traits=[])
    return [f"P{i}" for i in range(1, n + 1)]


@pytest.fixture(scope="session")
def built_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The warehouse of the small world, built once (profiles take seconds); tests copy it."""
    home = tmp_path_factory.mktemp("journeys-world")
    runtime = Runtime(Settings(home=str(home)))
    build_world(runtime, 4)
    runtime.close()
    for db in home.glob("omniweave.db*"):
        db.unlink()
    return home


@pytest.fixture
def world(opstore_url: str, built_world: Path, tmp_path: Path) -> Iterator[Runtime]:
    home = tmp_path / "home"
    shutil.copytree(built_world, home)
    runtime = Runtime(Settings(home=str(home), database_url=opstore_url))
    yield runtime
    runtime.close()
