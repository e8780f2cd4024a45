"""`segments_of`: the segments one person is in, against the catalogue's members of every segment
(`get_segment`, the other side), on the shared demo world."""

from __future__ import annotations

from pathlib import Path

from omniweave.runtime import Runtime
from omniweave.segments.service.catalog import get_segment, list_segments
from omniweave.segments.service.membership import segments_of
from omniweave.settings import Settings


def test_a_persons_segments_are_those_whose_members_hold_them(demo_home: Path) -> None:
    runtime = Runtime(Settings(home=str(demo_home)))
    try:
        catalogue = {s.id: s for s in list_segments(runtime)}
        members = {sid: set(get_segment(runtime, sid, limit=10**7).person_ids) for sid in catalogue}
        everyone = sorted(set().union(*members.values()))
        busiest = sorted(everyone, key=lambda p: (-sum(p in m for m in members.values()), p))[:3]
        for person in [*busiest, everyone[len(everyone) // 2], "P-nobody"]:
            found = segments_of(runtime, person)
            assert [m.segment_id for m in found] == sorted(sid for sid, m in members.items() if person in m), person
            for membership in found:
                assert membership.name == catalogue[membership.segment_id].name
                assert membership.since is not None
        assert len(segments_of(runtime, busiest[0])) >= 2
        assert segments_of(runtime, "P-nobody") == ()
    finally:
        runtime.close()
