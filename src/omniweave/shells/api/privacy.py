"""`/v1/privacy`: data-subject requests (export, delete, suppress, unsuppress, retention) and consent.

Every route needs a secret key, like the other admin routes. A request acts on the resolved person
(every identifier of theirs) and answers with its receipts; an export also carries its bundle. These call
the same services as `omniweave privacy ...` (privacy/service/).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from omniweave.errors import InputError
from omniweave.privacy.roles import PRIVACY_ADMIN
from omniweave.shells.api.deps import RuntimeDep, require
from omniweave.shells.api.errors import ApiError, input_problems
from omniweave.shells.api.schemas import ErrorBody

router = APIRouter(
    prefix="/v1/privacy",
    tags=["privacy"],
    dependencies=[require(PRIVACY_ADMIN)],  # privacy officers and owners, keys with the privacy:admin scope
    responses={
        400: {"model": ErrorBody},
        401: {"model": ErrorBody},
        403: {"model": ErrorBody},
        404: {"model": ErrorBody},
    },
)


class RequestCreate(BaseModel):
    """A data-subject request: its kind and the identifier of the person (none for retention)."""

    kind: Literal["export", "delete", "suppress", "unsuppress", "retention"]
    identifier: str = Field("", max_length=500, description="kind:value, e.g. email:ann@example.com, or a person id")


class ConsentCreate(BaseModel):
    """One consent statement through the API."""

    identifier: str = Field(..., min_length=1, max_length=500)
    purpose: str = Field(..., min_length=1, max_length=40)
    granted: bool


def _refused(exc: InputError, field: str) -> ApiError:
    problems = input_problems(exc, default_field=field)
    status = 404 if "no privacy request" in str(exc) else 400
    return ApiError(status, problems[0][0] or field, str(exc))


def _plain(document: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS, default=str))
    return body


@router.post("/requests", summary="Make a data-subject request")
def create_request(runtime: RuntimeDep, body: RequestCreate) -> dict[str, Any]:
    """Run an export, deletion, suppression, unsuppression or retention request; the answer holds its status,
    its receipts and, for an export, the bundle."""
    from omniweave.privacy.service.requests import submit

    if body.kind != "retention" and not body.identifier.strip():
        raise ApiError(400, "identifier", "expected the identifier of the person (e.g. email:ann@example.com)")
    try:
        result = submit(runtime, body.kind, body.identifier, requested_by="api")
    except InputError as exc:
        raise _refused(exc, "identifier") from None
    return _plain(result.to_dict())


@router.get("/requests", summary="List data-subject requests")
def list_requests(runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    """The newest requests first, without receipts."""
    from omniweave.privacy.service.requests import list_requests as listed

    return [_plain(r.to_dict()) for r in listed(runtime, limit)]


@router.get("/requests/{request_id}", summary="A data-subject request with its receipts")
def show_request(runtime: RuntimeDep, request_id: str) -> dict[str, Any]:
    """One request: status and a receipt per target (what was removed where, when)."""
    from omniweave.privacy.service.requests import get

    try:
        return _plain(get(runtime, request_id).to_dict())
    except InputError as exc:
        raise _refused(exc, "request") from None


@router.get("/consent", summary="A person's consent")
def show_consent(
    runtime: RuntimeDep, identifier: Annotated[str, Query(min_length=1, description="kind:value or a person id")]
) -> dict[str, Any]:
    """The latest statement per purpose and the history (source, time), over every identifier of the person."""
    from omniweave.privacy.service.consent import consent_of

    try:
        return _plain(consent_of(runtime, identifier).to_dict())
    except InputError as exc:
        raise _refused(exc, "identifier") from None


@router.post("/consent", summary="Record a consent statement")
def record_consent(runtime: RuntimeDep, body: ConsentCreate) -> dict[str, Any]:
    """Record yes or no to one purpose for the person; it also goes into the inbox as an event, so profiles
    agree after the next build."""
    from omniweave.privacy.service.consent import record_consent as record

    try:
        return _plain(record(runtime, body.identifier, body.purpose, body.granted).to_dict())
    except InputError as exc:
        raise _refused(exc, exc.field or "identifier") from None


@router.post("/consent/sync", summary="Record the consent statements of the log and the channels")
def sync_consent(runtime: RuntimeDep) -> dict[str, Any]:
    """Read consent statements from the event log and the suppression list; record the new ones."""
    from omniweave.privacy.service.consent import sync_consent as sync

    return _plain(sync(runtime).to_dict())
