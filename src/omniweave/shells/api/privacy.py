"""`/v1/privacy`: data-subject requests (export, delete, suppress, unsuppress, retention) and consent.

Every route needs the privacy:admin scope. A request acts on the resolved person (every identifier of
theirs) and is a job: POST answers `202` with its id and status URL at once, and `JobWorker` — a thread of
the serving process, started with the app — runs it (and, when it starts, any request a stop or crash left
pending or running). GET shows its status and a receipt per target; a finished export's bundle is at
`/v1/privacy/requests/{id}/bundle`. These call the same services as `omniweave privacy ...`
(privacy/service/).
"""

from __future__ import annotations

import logging
import threading
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from omniweave.errors import InputError
from omniweave.privacy.roles import PRIVACY_ADMIN
from omniweave.runtime import Runtime
from omniweave.settings import Settings
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


log = logging.getLogger(__name__)


class JobWorker:
    """Runs the data-subject requests in a thread of the serving process, with its own Runtime: at start
    those a stop or crash interrupted, then each new one as soon as it is made (`wake`) or within
    `poll_seconds` (one made by another process). A request cut off by `stop` is resumed at the next start;
    every step of a request is safe to repeat."""

    def __init__(self, settings: Settings, poll_seconds: float = 1.0):
        self.settings = settings
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="privacy-jobs", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the step in progress (a long one is left to the next start: the thread is a daemon)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        from omniweave.privacy.service.requests import run_jobs

        runtime = Runtime(self.settings)
        interrupted = True
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    run_jobs(runtime, interrupted=interrupted, stop=self._stopping.is_set)
                    interrupted = False
                except Exception:  # noqa: BLE001 - the store is away: try again at the next poll
                    log.exception("privacy jobs: could not read the requests; retrying in %.0f s", self.poll_seconds)
                self._wake.wait(self.poll_seconds)
        finally:
            runtime.close()


class RequestAccepted(BaseModel):
    id: str
    kind: str
    status: str
    status_url: str


@router.post(
    "/requests",
    status_code=202,
    response_model=RequestAccepted,
    summary="Make a data-subject request (a job)",
    responses={202: {"description": "the job is made; follow status_url (also the Location header)"}},
)
def create_request(runtime: RuntimeDep, request: Request, response: Response, body: RequestCreate) -> dict[str, Any]:
    """Make an export, deletion, suppression, unsuppression or retention request: the person is resolved now
    (an unknown identifier is a 400), the work runs in the background. GET the status URL for its status and
    receipts; an export's bundle is at `<status_url>/bundle` once it is done."""
    from omniweave.privacy.service.requests import submit

    if body.kind != "retention" and not body.identifier.strip():
        raise ApiError(400, "identifier", "expected the identifier of the person (e.g. email:ann@example.com)")
    try:
        made = submit(runtime, body.kind, body.identifier, requested_by="api", run_now=False, keep_bundle=True)
    except InputError as exc:
        raise _refused(exc, "identifier") from None
    worker: JobWorker | None = getattr(request.app.state, "privacy_jobs", None)
    if worker is not None:
        worker.wake()
    status_url = f"/v1/privacy/requests/{made.id}"
    response.headers["location"] = status_url
    return {"id": made.id, "kind": made.kind, "status": made.status, "status_url": status_url}


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
        found = _plain(get(runtime, request_id).to_dict())
    except InputError as exc:
        raise _refused(exc, "request") from None
    if found["kind"] == "export" and found["status"] == "done":
        found["bundle_url"] = f"/v1/privacy/requests/{request_id}/bundle"
    return found


@router.get(
    "/requests/{request_id}/bundle",
    summary="A finished export's bundle",
    responses={409: {"model": ErrorBody}, 410: {"model": ErrorBody}},
)
def request_bundle(runtime: RuntimeDep, request_id: str) -> Response:
    """The export as one JSON document (identifiers, profile, consent history, events, messages, coupons,
    segment memberships); 409 while the job has not finished, 410 if a later deletion removed it."""
    from omniweave.privacy.service.requests import bundle_path, get

    try:
        found = get(runtime, request_id)
    except InputError as exc:
        raise _refused(exc, "request") from None
    if found.kind != "export":
        raise ApiError(404, "request", f"request {request_id} is a {found.kind}, not an export: it has no bundle")
    if found.status != "done":
        raise ApiError(409, "request", f"request {request_id} is {found.status}; the bundle is ready when it is done")
    path = bundle_path(runtime, request_id)
    data = path.read_bytes() if path.is_file() else b""
    if not data.strip():
        raise ApiError(410, "request", f"the bundle of {request_id} is gone (the person was deleted since)")
    return Response(data, media_type="application/json")


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
