"""A confirmed sign-up starts a welcome journey: the journey of docs/forms.md, published on the journeys' small
world, enters the person on their `Sign-up Confirmed` (and not on the unconfirmed submit)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from omniweave.activate.journeys.definition import parse_journey_text
from omniweave.activate.service.journeys import JourneyEngine, publish
from omniweave.activate.service.messages import builtin_messages
from omniweave.forms import service as F
from omniweave.profiles.service.build import write_identities
from omniweave.runtime import Runtime
from omniweave.storage.ops.tables.journeys import journey_runs
from tests.activate.journeys import conftest as journeys_world
from tests.activate.journeys.conftest import NOON, Clock
from tests.forms.conftest import NEWSLETTER

built_world, world = journeys_world.built_world, journeys_world.world  # the journeys' small world
pytestmark = pytest.mark.parametrize("opstore_url", ["sqlite"], indirect=True)
DOCS = Path(__file__).parents[2] / "docs" / "forms.md"


def _documented_journey() -> str:
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("## Journeys") :]
    found = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert found
    return found.group(1)


def _runs(runtime: Runtime) -> list[dict[str, object]]:
    with runtime.store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(journey_runs)).mappings()]


def test_the_documented_welcome_journey_starts_on_a_confirmed_signup(world: Runtime) -> None:
    journey = parse_journey_text(_documented_journey(), str(DOCS), messages=set(builtin_messages()))
    assert journey.entry.event == F.SIGNUP_CONFIRMED
    publish(world, journey)
    write_identities(
        world, [("user_id", "u1", "P1"), ("email", "p1@example.com", "P1"), ("anonymous_id", "visitor-1", "P1")]
    )
    F.save_form(world, NEWSLETTER)
    engine = JourneyEngine(world, fake=True, clock=Clock(NOON.timestamp()))
    answers = {"email": "p1@example.com", "consent": ["email"]}
    result, confirmed = F.sign_up(
        world, "newsletter", answers, anonymous_id="visitor-1", channels=F.fake_channels(world), confirm_now=False
    )
    assert result.status == "accepted" and confirmed == []
    while engine.consume() or engine.step():
        pass
    assert _runs(world) == []  # a submit alone starts nothing
    [signup] = result.signups
    assert F.confirm(world, F.confirm_token(world, signup)).status == "confirmed"
    while engine.consume() or engine.step():
        pass
    [run] = _runs(world)
    assert (run["journey"], run["person_id"], run["entry_key"]) == ("welcome_signup", "P1", F.reference_of(signup))
