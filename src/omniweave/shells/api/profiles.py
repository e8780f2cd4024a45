"""`/v1/profiles`: one person by person id or by any identifier (profiles/service/lookup.py)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query

from omniweave.errors import InputError
from omniweave.privacy.roles import PROFILES_READ, Principal, mask_personal_data
from omniweave.profiles.service.lookup import find_person, person_view
from omniweave.runtime import Runtime
from omniweave.shells.api.deps import RuntimeDep, require
from omniweave.shells.api.errors import ApiError, input_problems
from omniweave.shells.api.schemas import ErrorBody, PersonPublic

router = APIRouter(
    prefix="/v1/profiles",
    tags=["profiles"],
    responses={
        400: {"model": ErrorBody},
        401: {"model": ErrorBody},
        403: {"model": ErrorBody},
        404: {"model": ErrorBody},
    },
)
Reader = Annotated[Principal, require(PROFILES_READ)]  # an analyst's answers have every e-mail, phone, name masked

Limit = Annotated[int, Query(ge=1, le=1000, description="the newest events of the timeline, at most")]


def _person(runtime: Runtime, ref: str, limit: int, reader: Principal) -> dict[str, Any]:
    try:
        found = find_person(runtime, ref)
    except InputError as exc:
        problems = input_problems(exc, default_field="identifier")
        raise ApiError(400, problems[0][0] or "identifier", str(exc)) from None
    if found is None:
        raise ApiError(404, "identifier", f"nobody has the identifier or person id {ref!r}")
    # through orjson: NaN in a profile becomes null, as JSON can carry it
    body: dict[str, Any] = orjson.loads(orjson.dumps(person_view(runtime, found[0], found[1], limit).to_dict()))
    return mask_personal_data(body) if reader.masks_pii else body


@router.get("", response_model=PersonPublic, summary="Find a person by identifier")
def profile_by_identifier(
    runtime: RuntimeDep,
    reader: Reader,
    identifier: Annotated[str | None, Query(description="kind:value, e.g. email:ann@example.com")] = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """A person's profile, identifiers and timeline, found by any identifier (normalised like `resolve`)."""
    if not identifier:
        raise ApiError(400, "identifier", "expected ?identifier=kind:value (e.g. email:ann@example.com)")
    return _person(runtime, identifier, limit, reader)


@router.get("/{ref:path}", response_model=PersonPublic, summary="A person by person id or identifier")
def profile_by_id(runtime: RuntimeDep, reader: Reader, ref: str, limit: Limit = 50) -> dict[str, Any]:
    """A person's profile, identifiers and timeline; `ref` is a person id (also a merged one) or an identifier."""
    return _person(runtime, ref, limit, reader)
