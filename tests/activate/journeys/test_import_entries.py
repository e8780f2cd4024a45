"""An `email_capture` import enters journeys (the mapping's `announce`: its events go to the inbox too, logged
once), and a welcome goes to the address the trigger stated when the profile is older than the trigger."""

from __future__ import annotations

from pathlib import Path

import orjson
import sqlalchemy as sa

from omniweave.activate.journeys.model import Entry, Exit, Journey, PropertyFilter, Send, Step
from omniweave.activate.service.journeys import JourneyEngine, contact_of, publish, sink_keys, with_contact
from omniweave.collect.loader import LOGGED, load_all
from omniweave.collect.service import import_file
from omniweave.runtime import Runtime
from omniweave.storage.ops.tables.journeys import journey_runs

from .conftest import NOON, Clock

CAPTURES = """capture_id,store_id,timestamp,email,email_opt_in,customer_number
C1,S01,2026-06-30T11:00:00Z, P2.New@Example.com ,true,u2
C2,S01,2026-05-01T11:00:00Z,old3@example.com,true,u3
C3,S01,2026-06-30T11:05:00Z,p4.new@example.com,false,u4
"""


def welcome() -> Journey:
    return Journey(
        name="welcome_till",
        entry=Entry("event", event="Email Captured", where=(PropertyFilter("email_opt_in", "eq", True),)),
        start="welcome",
        steps={"welcome": Step("welcome", Send("welcome_till_capture", "email", "done")), "done": Step("done", Exit())},
    )


def test_an_email_capture_import_enters_the_welcome_and_it_goes_to_the_captured_address(
    world: Runtime, tmp_path: Path
) -> None:
    publish(world, welcome())
    path = tmp_path / "captures.csv"
    path.write_text(CAPTURES)
    before = world.store.max_seq()
    summary = import_file(world, "email_capture", path)
    assert summary.rows_imported == 3
    payloads = [orjson.loads(r.payload) for r in world.store.read(after=before)]
    assert len(payloads) == 3 and all(p[LOGGED] for p in payloads)
    assert {p["event"] for p in payloads} == {"Email Captured"}
    # importing the same file again: nothing new in the log or the inbox
    import_file(world, "email_capture", path)
    assert world.store.max_seq() == before + 3
    # the loader passes over them: the log holds each capture once
    load_all(world.store, world.log)
    ev = world.warehouse().table("events")
    logged = ev.filter(ev.event == "Email Captured").select("message_id").to_pyarrow().column(0).to_pylist()
    assert len(logged) == len(set(logged)) == 3

    sink = tmp_path / "sends.jsonl"
    engine = JourneyEngine(world, sink=str(sink), clock=Clock(NOON.timestamp()))
    while engine.consume(100):
        pass
    while engine.step(100):
        pass
    engine.dispatch()
    with world.store.engine.connect() as conn:
        entered = sorted(
            str(p)
            for (p,) in conn.execute(
                sa.select(journey_runs.c.person_id).where(journey_runs.c.journey == "welcome_till")
            )
        )
    assert entered == ["P2", "P3"]  # u4 said no to e-mail
    sent = {
        orjson.loads(line)["key"].split(":")[3]: orjson.loads(line)["to"] for line in sink.read_bytes().splitlines()
    }
    assert len(sink_keys(sink)) == 2
    to = {run_person(world, run): address for run, address in sent.items()}
    # P2's profile was built before the capture: the captured address (normalised); P3's capture is older
    # than what the profile saw, so the profile's address stands
    assert to == {"P2": "p2.new@example.com", "P3": "p3@example.com"}


def run_person(rt: Runtime, run_id: str) -> str:
    with rt.store.engine.connect() as conn:
        return str(conn.execute(sa.select(journey_runs.c.person_id).where(journey_runs.c.id == run_id)).scalar_one())


def test_contact_of_reads_top_level_and_context_traits_and_with_contact_prefers_the_newer() -> None:
    event = {
        "timestamp": "2026-06-30T11:00:00Z",
        "traits": {"email": " A@B.com "},
        "context": {"traits": {"phone": "+44 7700"}},
    }
    contact = contact_of(event)
    assert contact == {"email": "a@b.com", "phone": "+44 7700", "at": NOON.timestamp() - 3600}
    stating = contact_of({**event, "traits": {"email": "a@b.com", "email_opt_in": True, "sms_opt_in": False}})
    assert stating is not None and stating["consent"] == {"consent_email": True, "consent_sms": False}
    assert with_contact({"consent_email": False, "last_seen": None}, stating)["consent_email"] is True
    assert contact_of({"timestamp": "2026-06-30T11:00:00Z", "properties": {"email": "x@y.z"}}) is None
    old = {"primary_email": "old@b.com", "last_seen": "2026-06-01T00:00:00+00:00"}
    assert with_contact(old, contact)["primary_email"] == "a@b.com"
    assert with_contact(old, contact)["primary_phone"] == "+44 7700"
    newer = {"primary_email": "old@b.com", "last_seen": NOON}
    assert with_contact(newer, contact) == newer
    assert with_contact(old, None) == old
