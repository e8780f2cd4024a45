"""`omniweave journeys …` in process (CliRunner) over the journeys' small world (tests/activate/journeys)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner, Result

from omniweave.runtime import Runtime
from omniweave.shells.cli.main import app
from tests.activate.journeys import conftest as journeys_world

built_world, world = journeys_world.built_world, journeys_world.world  # the small world
pytestmark = pytest.mark.parametrize("opstore_url", ["sqlite"], indirect=True)

CART = """
name: cart_x
entry: {event: Product Added, where: {cart_id: {exists: true}}, correlate: cart_id}
re_entry: always
holdout: 0
start: wait_hour
steps:
  wait_hour: {wait: 1h, next: email}
  email: {send: {message: cart_reminder, channel: email}, next: done}
  done: {exit: done}
"""

INVITE = """
name: invite_x
entry: {api: true}
start: wait_day
steps:
  wait_day: {wait: 1d, next: email}
  email: {send: {message: store_event_invitation, channel: email}, next: done}
  done: {exit: done}
"""


def cli(rt: Runtime, *args: str) -> Result:
    env = {"COLUMNS": "200", "OMNIWEAVE_DATABASE_URL": rt.settings.resolved_database_url}
    return CliRunner().invoke(app, ["--home", str(rt.settings.home), "journeys", *args], env=env)


def project_file(rt: Runtime, name: str, text: str) -> Path:
    folder = Path(rt.settings.home) / "journeys"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def test_validate_passes_the_built_ins_and_names_every_problem_of_a_bad_file(world: Runtime, tmp_path: Path) -> None:
    ok = cli(world, "validate")
    assert ok.exit_code == 0, ok.output
    assert "cart_abandonment: ok" in ok.output and "birthday_coupon: ok" in ok.output
    bad = tmp_path / "bad_one.yaml"
    bad.write_text(
        "name: bad_one\nentry: {event: X}\nholdout: 2\nstart: a\n"
        "steps:\n  a: {wait: soon, next: b}\n  b: {send: {message: nope, channel: pigeon}, next: a}\n"
    )
    result = cli(world, "validate", str(bad))
    assert result.exit_code == 1
    for path in ("holdout", "steps.a.wait", "steps.b.send.channel", "steps.b.send.message"):
        assert path in result.output, (path, result.output)
    unknown = cli(world, "validate", "no_such_journey")
    assert unknown.exit_code == 1 and "no journey file 'no_such_journey'" in unknown.output


def test_publish_list_enter_explain_and_stats(world: Runtime) -> None:
    project_file(world, "invite_x", INVITE)
    first = cli(world, "publish", "invite_x")
    assert first.exit_code == 0, first.output
    assert "invite_x: version 1 (new)" in first.output
    again = cli(world, "publish", "invite_x")
    assert "version 1 (unchanged)" in again.output
    listed = cli(world, "list", "--format", "json")
    rows = {r["name"]: r for r in orjson.loads(listed.stdout)}
    assert rows["invite_x"]["published_version"] == 1 and rows["invite_x"]["source"] == "project"
    assert rows["cart_abandonment"]["source"] == "builtin" and rows["cart_abandonment"]["published_version"] is None

    entered = cli(world, "enter", "invite_x", "--person", "u1")
    assert entered.exit_code == 0, entered.output
    assert "1 of 1 entered" in entered.output
    assert "0 of 1 entered" in cli(world, "enter", "invite_x", "--person", "P1").output  # same person, same key
    persons = Path(world.settings.home) / "invitees.csv"
    persons.write_text("person_id\nu2\np3@example.com\n")
    assert "2 of 2 entered" in cli(world, "enter", "invite_x", "--persons", str(persons)).output
    persons.write_text("u2\nnobody\n")
    bad = cli(world, "enter", "invite_x", "--persons", str(persons))
    assert bad.exit_code == 2 and "record 2" in bad.output and "'nobody'" in bad.output

    # the new version drops the step where the three wait: reported, and moved only by the mapping
    project_file(world, "invite_x", INVITE.replace("start: wait_day", "start: pause").replace("wait_day:", "pause:"))
    wrong = cli(world, "publish", "invite_x", "--map", "wait_day=nowhere")
    assert wrong.exit_code == 2 and "nowhere" in wrong.output and "map" in wrong.output
    malformed = cli(world, "publish", "invite_x", "--map", "wait_day")
    assert malformed.exit_code == 2 and "OLD_STEP=NEW_STEP" in malformed.output
    moved = cli(world, "publish", "invite_x", "--map", "wait_day=pause")
    assert moved.exit_code == 0, moved.output
    assert "version 2 (new)" in moved.output and "3 run(s) at removed step wait_day: moved to pause" in moved.output

    explained = cli(world, "explain", "p1@example.com")
    assert explained.exit_code == 0, explained.output
    assert "person P1" in explained.output and "invite_x v2" in explained.output and "entered" in explained.output
    assert cli(world, "explain", "nobody@example.com").exit_code == 2

    stats = cli(world, "stats", "invite_x", "--format", "json")
    assert stats.exit_code == 0, stats.output
    doc = orjson.loads(stats.stdout)
    assert doc["runs"] == {"active": 3} and doc["nodes"][0] == {
        "node": "wait_day",
        "entered": 3,
        "sent": 0,
        "skipped": {},
        "converted": 0,
        "other": {},
    }
    assert doc["lift"] is None and doc["lift_note"] == "no holdout runs yet"
    unknown = cli(world, "stats", "no_such")
    assert unknown.exit_code == 2 and "no published journey 'no_such'" in unknown.output


def test_run_on_sqlite_says_it_runs_one_worker_and_simulate_prints_counts(world: Runtime) -> None:
    project_file(world, "cart_x", CART)
    assert cli(world, "publish", "cart_x").exit_code == 0
    ran = cli(world, "run", "--workers", "2", "--until-idle", "--fake")
    assert ran.exit_code == 0, ran.output
    assert "SQLite has one writer: running 1 worker instead of 2" in ran.output
    simulated = cli(world, "simulate", "cart_x", "--days", "3", "--until", "2026-07-01")
    assert simulated.exit_code == 0, simulated.output
    assert "journey cart_x: 0 events replayed" in simulated.output and "entries: 0" in simulated.output
    bad = cli(world, "simulate", "cart_x", "--until", "yesterday-ish")
    assert bad.exit_code == 2 and "'until'" in bad.output
