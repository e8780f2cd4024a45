"""The change events of a segment evaluation, built column by column, are those of the per-event path: a dict per
change (`change_event`) converted by `events_to_table`, and its inbox payload written by orjson."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pyarrow as pa

from omniweave.collect.loader import LOGGED
from omniweave.runtime import Runtime
from omniweave.segments import language as S
from omniweave.segments.service.evaluate import (
    SEGMENT_SOURCE,
    _first_ids,
    change_event,
    change_events,
    inbox_payloads,
)
from omniweave.settings import Settings
from omniweave.storage.eventlog import events_to_table

SEGMENTS = {
    "big": S.parse_segment({"id": "big", "name": 'Big "spenders" é', "where": {"trait": "total_revenue", "gte": 1}}),
    "quiet": S.parse_segment({"id": "quiet", "where": {"trait": "total_revenue", "lt": 1}}),
}
NOW = datetime(2025, 3, 4, 5, 6, 7, 891_234, tzinfo=UTC)


def _by_rows(changes, first_ids):
    known = {r["person_id"]: r for r in first_ids.to_pylist()}
    events = []
    for name, sid, person in changes:
        ids = known.get(person, {})
        events.append(change_event(name, SEGMENTS[sid], person, ids.get("user_id"), ids.get("anonymous_id"), NOW))
    payloads = [orjson.dumps({k: v for k, v in e.items() if v is not None} | {LOGGED: True}) for e in events]
    return events_to_table(events, source=SEGMENT_SOURCE), payloads


def test_change_events_are_those_of_the_per_event_path():
    first_ids = pa.table(
        {
            "person_id": ["p1", "p2", "p3", 'p"4\\ü'],
            "user_id": ["u1", None, "u3", "ü\n5"],
            "anonymous_id": ["a1", "a2", None, None],
        }
    )
    changes = [
        (S.SEGMENT_ENTERED, "big", "p1"),
        (S.SEGMENT_ENTERED, "big", "p2"),
        (S.SEGMENT_ENTERED, "big", 'p"4\\ü'),
        (S.SEGMENT_EXITED, "big", "p3"),
        (S.SEGMENT_ENTERED, "quiet", "p3"),
        (S.SEGMENT_EXITED, "quiet", "nobody"),  # no identity left: neither id
    ]
    table = change_events(changes, SEGMENTS, first_ids, NOW)
    expected, payloads = _by_rows(changes, first_ids)
    assert table.schema == expected.schema
    assert table.to_pylist() == expected.to_pylist()
    assert inbox_payloads(table, NOW) == payloads
    assert change_events([], SEGMENTS, first_ids, NOW).num_rows == 0


def test_first_ids_are_each_persons_smallest_user_and_anonymous_id(demo_home):
    rt = Runtime(Settings(home=str(demo_home)))
    try:
        rows = rt.warehouse().table("identities").to_pyarrow().to_pylist()
        everyone = {r["person_id"] for r in rows}
        expected: dict[str, dict[str, str]] = {}
        for r in rows:
            if r["kind"] in ("user_id", "anonymous_id"):
                kinds = expected.setdefault(r["person_id"], {})
                if r["value"] < kinds.get(r["kind"], "\uffff"):
                    kinds[r["kind"]] = r["value"]
        few = set(sorted(everyone)[:50])
        for persons in (few, everyone):  # a short list is filtered by the engine, a long one is not
            found = {
                r["person_id"]: {k: r[k] for k in ("user_id", "anonymous_id") if r[k] is not None}
                for r in _first_ids(rt, persons).to_pylist()
                if r["person_id"] in persons
            }
            assert found == {p: v for p, v in expected.items() if p in persons}
            assert any("user_id" in v for v in found.values()) and any("anonymous_id" in v for v in found.values())
    finally:
        rt.close()
