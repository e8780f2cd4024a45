"""The segment catalogue: every definition with its current size, one segment with its members, and
writing a definition as a project segment file.

These are the operations the REST API (shells/api/segments.py) offers; each takes the Runtime and
returns a frozen result with `to_dict()`, so another shell renders the very same values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from omniweave.errors import InputError
from omniweave.runtime import Runtime
from omniweave.segments import language as S
from omniweave.segments.service.evaluate import compiler_for, load_segments, segment_summaries, segments_folder

MEMBERS_DATASET = "segment_members"
MEMBER_LIMIT = 1000
"""At most this many person ids come with one segment (sorted), whatever its size."""


class SegmentNotFound(InputError):
    """No segment has the id asked for (the API answers 404)."""


@dataclass(frozen=True)
class SegmentSummary:
    """One segment as listed: its definition's descriptive fields and its current size."""

    id: str
    name: str | None
    description: str | None
    source: str
    persona: dict[str, list[str]] | None
    members: int | None  # None until `omniweave segments evaluate` has run for it

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "persona": None if self.persona is None else {k: list(v) for k, v in self.persona.items()},
            "members": self.members,
        }


@dataclass(frozen=True)
class SegmentDetail:
    """One segment with the ids of its members (the first MEMBER_LIMIT, sorted)."""

    summary: SegmentSummary
    person_ids: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary.to_dict(), "person_ids": list(self.person_ids)}


def _sizes(runtime: Runtime) -> dict[str, int]:
    if not runtime.log.has_data(MEMBERS_DATASET):
        return {}
    members = runtime.warehouse().table(MEMBERS_DATASET)
    counts = members.group_by("segment_id").aggregate(n=members.count()).to_pyarrow().to_pylist()
    return {row["segment_id"]: int(row["n"]) for row in counts}


def _summaries(segments: Mapping[str, S.Segment], sizes: Mapping[str, int]) -> list[SegmentSummary]:
    return [
        SegmentSummary(
            id=row["id"],
            name=row["name"],
            description=row["description"],
            source=row["source"],
            persona=row["persona"],
            members=sizes.get(row["id"]),
        )
        for row in segment_summaries(segments)
    ]


def list_segments(runtime: Runtime) -> tuple[SegmentSummary, ...]:
    """Every segment (the built-in library and the project's files), sorted by id, with its size."""
    return tuple(_summaries(load_segments(runtime.settings), _sizes(runtime)))


def get_segment(runtime: Runtime, segment_id: str, limit: int = MEMBER_LIMIT) -> SegmentDetail:
    """One segment and its members as last evaluated; SegmentNotFound if no definition has this id."""
    segments = load_segments(runtime.settings)
    if segment_id not in segments:
        raise SegmentNotFound(f"no segment {segment_id!r}", field="segment_id")
    sizes = _sizes(runtime)
    members: list[str] = []
    if sizes:
        table = runtime.warehouse().table(MEMBERS_DATASET)
        chosen = table.filter(table.segment_id == segment_id).order_by("person_id").limit(limit)
        members = chosen.person_id.to_pyarrow().to_pylist()
    summary = _summaries({segment_id: segments[segment_id]}, sizes)[0]
    return SegmentDetail(summary, tuple(members))


def save_segment(runtime: Runtime, segment_id: str, definition: Any) -> SegmentSummary:
    """Check a definition and write it as the project's `segments/<id>.yaml`.

    The language's own rules are checked first, then (once profiles exist) the definition is compiled
    against them, which finds unknown traits and wrong value types. Every problem is reported at once
    (an InputError, a SegmentError listing each) and nothing is written while there is one."""
    if isinstance(definition, dict):
        definition = {**definition, "id": definition.get("id", segment_id)}
    seg = S.parse_segment(definition, source=f"PUT /v1/segments/{segment_id}")
    if seg.id != segment_id:
        raise InputError(f"the body's id {seg.id!r} is not the path's {segment_id!r}", field="id")
    segments = {**load_segments(runtime.settings), segment_id: seg}
    if runtime.log.has_data("profiles") and runtime.log.has_data("identities"):
        compiler_for(runtime, segments).members(segment_id)  # compiles: unknown traits, wrong types...
    folder = segments_folder(runtime.settings)
    folder.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(definition, sort_keys=False, allow_unicode=True)
    (folder / f"{segment_id}.yaml").write_text(text, encoding="utf-8")
    return _summaries({segment_id: seg}, {})[0]
