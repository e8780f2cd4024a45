"""`/v1/segments`: the segment catalogue, one segment's members, and writing a definition."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request

from omniweave.privacy.roles import CONFIG_MANAGE, PROFILES_READ, Principal
from omniweave.privacy.service.audit import record
from omniweave.segments.service.catalog import SegmentNotFound, get_segment, list_segments, save_segment
from omniweave.shells.api.deps import RuntimeDep, client_origin, require
from omniweave.shells.api.errors import ApiError
from omniweave.shells.api.schemas import ErrorBody, SegmentPublic, SegmentPut, SegmentWithMembers

router = APIRouter(
    prefix="/v1/segments",
    tags=["segments"],
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
)


@router.get(
    "", response_model=list[SegmentPublic], dependencies=[require(PROFILES_READ)], summary="Every segment with its size"
)
def segments(runtime: RuntimeDep) -> list[dict[str, Any]]:
    """The built-in library and the project's segment files, with their sizes at the last evaluation."""
    return [s.to_dict() for s in list_segments(runtime)]


@router.get(
    "/{segment_id}",
    response_model=SegmentWithMembers,
    responses={404: {"model": ErrorBody}},
    dependencies=[require(PROFILES_READ)],
    summary="One segment and its members",
)
def segment(runtime: RuntimeDep, segment_id: str) -> dict[str, Any]:
    """One segment's definition summary, size and (the first 1000) member ids."""
    try:
        return get_segment(runtime, segment_id).to_dict()
    except SegmentNotFound as exc:
        raise ApiError(404, "segment_id", exc.reason) from None


@router.put(
    "/{segment_id}",
    response_model=SegmentPublic,
    responses={400: {"model": ErrorBody}},
    summary="Write a segment definition",
)
def put_segment(
    runtime: RuntimeDep,
    request: Request,
    segment_id: str,
    definition: SegmentPut,
    principal: Annotated[Principal, require(CONFIG_MANAGE)],
) -> dict[str, Any]:
    """Check a definition (the language's rules, then against the profiles) and write it as a project
    segment file; every problem is reported at once and nothing is written then. Recorded in the audit log."""
    saved = save_segment(runtime, segment_id, definition.model_dump(exclude_unset=True)).to_dict()
    record(runtime, principal.actor, "segment.save", f"segment:{segment_id}", {}, client_origin(request))
    return saved
