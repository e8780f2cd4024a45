"""The demo world's customers sign up through the forms during the journeys' stretch (demo/signups.py): the KPI
`email_signups` by placement equals the world's truth, the forms' own table agrees, and `welcome_signup` enters
every confirmed sign-up whose browser the engine knows."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from omniweave.settings import Settings

WORLD = {"customers": 300, "days": 20, "seed": 7, "journey_days": 7}
"""A small world: its last 7 days have sign-ups at every placement kind the demo draws."""
ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Any, dict[str, Any]]:
    from omniweave.demo.runner import run_demo

    settings = Settings(home=str(tmp_path_factory.mktemp("signups") / "home"))
    result = run_demo(settings, console=None, **WORLD)
    truth = json.loads((result.folder / "ground_truth" / "signups.json").read_text())
    return settings, result, truth


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def test_the_documented_welcome_signup_is_the_builtin_file() -> None:
    docs = (ROOT / "docs" / "forms.md").read_text(encoding="utf-8")
    section = docs[docs.index("## Journeys") :]
    found = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert found
    shipped = ROOT / "src" / "omniweave" / "activate" / "journeys" / "library" / "welcome_signup.yaml"
    body = "".join(line for line in shipped.read_text("utf-8").splitlines(True) if not line.startswith("#"))
    assert found.group(1) == body


@pytest.mark.slow
def test_the_kpi_by_placement_equals_the_worlds_signups(demo: tuple[Settings, Any, dict[str, Any]]) -> None:
    from omniweave.demo.signups import STORE_PLACEMENTS, describe, kpi_by_placement
    from omniweave.runtime import Runtime
    from omniweave.storage.ops.tables.forms import form_signups

    settings, result, truth = demo
    expected = truth["by_placement"]
    rows = truth["signups"]
    assert sum(expected.values()) == len(rows) > 0 and not truth["refused"]
    assert {r["placement"] for r in rows} <= {"web", *STORE_PLACEMENTS}
    assert len({r["person"] for r in rows}) == len(rows)  # one sign-up a person
    since, until = (_epoch(truth["stretch"][k]) for k in ("since", "until"))
    assert all(since <= _epoch(r["at"]) < until for r in rows)
    counted: dict[str, int] = {}
    for r in rows:
        counted[r["placement"]] = counted.get(r["placement"], 0) + 1
    assert counted == expected
    runtime = Runtime(settings)
    try:
        with runtime.store.engine.connect() as conn:  # the forms' own table: every one confirmed, where it was made
            stored = conn.execute(
                sa.select(form_signups.c.placement, sa.func.count())
                .where(form_signups.c.status == "confirmed")
                .group_by(form_signups.c.placement)
            ).all()
        assert {str(p): int(n) for p, n in stored} == expected
        assert kpi_by_placement(runtime) == expected
    finally:
        runtime.close()
    # what the demo printed
    assert result.journeys.signups == expected and result.journeys.signup_kpi == expected
    assert "equal to the truth" in describe(result.journeys.signups, result.journeys.signup_kpi)


@pytest.mark.slow
def test_welcome_signup_enters_the_confirmed_signups_whose_browser_is_known(
    demo: tuple[Settings, Any, dict[str, Any]],
) -> None:
    from omniweave.forms.service import reference_of
    from omniweave.runtime import Runtime
    from omniweave.storage.ops.tables.forms import form_signups
    from omniweave.storage.ops.tables.journeys import journey_runs

    settings, result, truth = demo
    runtime = Runtime(settings)
    try:
        ids = runtime.warehouse().table("identities")
        anon = ids.filter(ids.kind == "anonymous_id").select("value", "person_id").to_pyarrow().to_pylist()
        person_of = {str(r["value"]): str(r["person_id"]) for r in anon}
        with runtime.store.engine.connect() as conn:
            runs = conn.execute(
                sa.select(journey_runs.c.person_id, journey_runs.c.entry_key).where(
                    journey_runs.c.journey == "welcome_signup"
                )
            ).all()
            signups = conn.execute(
                sa.select(form_signups.c.id, form_signups.c.anonymous_id).where(form_signups.c.status == "confirmed")
            ).all()
    finally:
        runtime.close()
    # the persons the engine could know: a confirmed sign-up's browser resolved before the stretch
    known = {person_of[str(a)]: reference_of(str(i)) for i, a in signups if str(a) in person_of}
    assert 0 < len(known) < len(truth["signups"])  # the kiosk's sign-ups are nobody's browser
    assert len(runs) == len(known) == truth["welcome_signup_entries_expected"]  # re_entry: never, one a person
    assert {str(p) for p, _ in runs} == set(known)
    assert all(known[str(p)] == str(key) for p, key in runs)  # entered on its own Sign-up Confirmed
    entered = {t.journey: t.entered for t in result.journeys.journeys}
    assert entered["welcome_signup"] == len(known)
