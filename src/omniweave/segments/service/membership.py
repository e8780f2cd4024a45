"""The segments one person is in, as last evaluated: the other side of `catalog.get_segment` (one segment's
members). The dashboard's customer page shows them; like the catalogue it reads the `segment_members`
dataset that `omniweave segments evaluate` writes and names each segment from its definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from omniweave.runtime import Runtime
from omniweave.segments.service.catalog import MEMBERS_DATASET
from omniweave.segments.service.evaluate import load_segments, segment_summaries


@dataclass(frozen=True)
class Membership:
    """One segment the person is in: its id, name and description (None for a segment whose definition is
    gone since the evaluation), and since when the person is in it."""

    segment_id: str
    name: str | None
    description: str | None
    since: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "segment_id": self.segment_id,
            "name": self.name,
            "description": self.description,
            "since": None if self.since is None else self.since.isoformat().replace("+00:00", "Z"),
        }


def segments_of(runtime: Runtime, person_id: str) -> tuple[Membership, ...]:
    """The segments `person_id` is in as last evaluated, sorted by segment id; () before the first evaluation."""
    if not runtime.log.has_data(MEMBERS_DATASET):
        return ()
    members = runtime.warehouse().table(MEMBERS_DATASET)
    rows = (
        members.filter(members.person_id == person_id)
        .select("segment_id", "since")
        .order_by("segment_id")
        .to_pyarrow()
        .to_pylist()
    )
    described = {s["id"]: s for s in segment_summaries(load_segments(runtime.settings))}
    out = []
    for row in rows:
        summary = described.get(row["segment_id"], {})
        out.append(Membership(str(row["segment_id"]), summary.get("name"), summary.get("description"), row["since"]))
    return tuple(out)
