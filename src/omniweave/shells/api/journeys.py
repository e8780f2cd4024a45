"""`/v1/journeys`: the journeys, checking and publishing a definition, entering people, stats; and
`/v1/persons/{id}/journeys`: why did (or didn't) this person get this message (docs/journeys.md).

    GET  /v1/journeys                     built-in, project and published journeys, runs by status
    POST /v1/journeys/validate            a journey document: every problem at once (200, valid or not)
    POST /v1/journeys/{name}/publish      a new version (from the body's definition, else the file)
    POST /v1/journeys/{name}/enter        start runs for persons under the caller's key (the API entry)
    GET  /v1/journeys/{name}/stats        per node entered, sent, skipped by reason, converted; holdout lift
    GET  /v1/persons/{id}/journeys        each run of the person: entry, steps, policy decisions

Reading needs `journeys:run` (the person's explanation `profiles:read`); publishing `config:manage`.
Handlers call activate/service/journey_stats.py and activate/service/journeys.py only.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from omniweave.activate.journeys.definition import JourneyInvalid, StepMapping, parse_journey
from omniweave.activate.service import journey_stats as S
from omniweave.activate.service import messages as msgs
from omniweave.activate.service.journeys import JourneyEngine, publish
from omniweave.errors import InputError
from omniweave.privacy.roles import CONFIG_MANAGE, JOURNEYS_RUN, PROFILES_READ, Principal
from omniweave.privacy.service.audit import record
from omniweave.shells.api.deps import RuntimeDep, client_origin, require
from omniweave.shells.api.errors import ApiError
from omniweave.shells.api.schemas import ErrorBody
from omniweave.shells.cli.journeys import holdout_test

log = logging.getLogger("omniweave.api.journeys")

router = APIRouter(tags=["journeys"], responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}})

NAME_PATTERN = r"^[a-z0-9_]{1,100}$"


class JourneyListed(BaseModel):
    name: str
    source: str
    description: str
    entry: str
    published_version: int | None
    runs: dict[str, int]
    problems: int


class Problem(BaseModel):
    path: str
    message: str


class Validation(BaseModel):
    valid: bool
    journey: str | None
    steps: int
    problems: list[Problem]


class PublishBody(BaseModel):
    """Publish the journey's file, or `definition` (a journey document) when given; `map` moves runs waiting
    at steps the new version removes (old step -> new step)."""

    definition: dict[str, Any] | None = None
    map: dict[str, str] = Field(default_factory=dict)
    note: str | None = Field(default=None, max_length=1000)


class Published(BaseModel):
    journey: str
    version: int
    created: bool
    removed_steps: dict[str, int]
    moved: int


class EnterBody(BaseModel):
    """People to start runs for (person ids or any identifier), under the caller's idempotency `key`."""

    persons: list[str] = Field(min_length=1, max_length=10_000)
    key: str = Field(min_length=1, max_length=150, pattern=r"^[^\x00-\x1f\x7f]+$")


class Entered(BaseModel):
    journey: str
    entered: int
    requested: int


class Stats(BaseModel):
    journey: str
    runs: dict[str, int]
    nodes: list[dict[str, Any]]
    treated: dict[str, int]
    held_out: dict[str, int]
    lift: dict[str, Any] | None
    lift_note: str


class PersonJourneys(BaseModel):
    identifier: str
    person_id: str
    runs: list[dict[str, Any]]
    other_decisions: list[dict[str, Any]]


def _published_or_404(runtime: Any, name: str) -> None:
    if name not in S.published_names(runtime):
        raise ApiError(404, "name", f"no published journey {name!r}")


def _checked(runtime: Any, document: Any, source: str, default_name: str | None = None) -> Any:
    """The document parsed; JourneyInvalid as it is, a parser surprise on odd input as an InputError."""
    known = set(msgs.load_messages(runtime.settings))
    try:
        return parse_journey(document, source, default_name=default_name, messages=known)
    except InputError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as exc:  # odd shapes the parser did not foresee
        log.warning("journey document the parser could not read", exc_info=True)
        raise InputError(f"cannot read the journey document: {exc}", field="definition") from None


@router.get(
    "/v1/journeys",
    response_model=list[JourneyListed],
    dependencies=[require(JOURNEYS_RUN)],
    summary="Every journey with its published version and runs",
)
def journeys(runtime: RuntimeDep) -> list[dict[str, Any]]:
    """Built-in and project journey files and published journeys without a file."""
    return [s.to_dict() for s in S.list_journeys(runtime)]


@router.post(
    "/v1/journeys/validate",
    response_model=Validation,
    responses={400: {"model": ErrorBody}},
    dependencies=[require(JOURNEYS_RUN)],
    summary="Check a journey document",
)
def validate(runtime: RuntimeDep, document: dict[str, Any]) -> dict[str, Any]:
    """Every problem of the document at once, each with its path; nothing is stored."""
    try:
        journey = _checked(runtime, document, "<request>")
    except JourneyInvalid as exc:
        name = document.get("name") if isinstance(document.get("name"), str) else None
        problems = [{"path": p or "(top)", "message": m} for p, m in exc.problems]
        return {"valid": False, "journey": name, "steps": 0, "problems": problems}
    return {"valid": True, "journey": journey.name, "steps": len(journey.steps), "problems": []}


@router.post(
    "/v1/journeys/{name}/publish",
    response_model=Published,
    responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}},
    summary="Publish a journey version",
)
def publish_journey(
    runtime: RuntimeDep,
    request: Request,
    name: Annotated[str, PathParam(pattern=NAME_PATTERN)],
    principal: Annotated[Principal, require(CONFIG_MANAGE)],
    body: PublishBody | None = None,
) -> dict[str, Any]:
    """A new version (or the same one when unchanged); runs at removed steps counted, moved only by `map`.
    Recorded in the audit log."""
    body = body or PublishBody()
    if body.definition is not None:
        journey = _checked(runtime, body.definition, f"<request {name}>", default_name=name)
    else:
        files = S.journey_files(runtime.settings)
        if name not in files:
            raise ApiError(404, "name", f"no journey file {name!r}; send its `definition` in the body")
        journey = S.load_journey_file(files[name], runtime.settings)
    mapping = StepMapping.parse(body.map).moves
    result = publish(runtime, journey, mapping=mapping, note=body.note)
    record(
        runtime,
        principal.actor,
        "journey.publish",
        f"journey:{name}",
        {"version": result.version, "created": result.created, "moved": result.moved},
        client_origin(request),
    )
    return result.to_dict()


@router.post(
    "/v1/journeys/{name}/enter",
    response_model=Entered,
    responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}},
    dependencies=[require(JOURNEYS_RUN)],
    summary="Start runs for people",
)
def enter(runtime: RuntimeDep, name: str, body: EnterBody) -> dict[str, Any]:
    """Start a run per person under `key` (a repeated call with the same key starts nothing new); every
    identifier must be known (400 naming the first unknown one by its index)."""
    _published_or_404(runtime, name)
    persons = S.resolve_persons(runtime, body.persons)
    started = JourneyEngine(runtime).enter_many(name, persons, body.key)
    return {"journey": name, "entered": started, "requested": len(persons)}


@router.get(
    "/v1/journeys/{name}/stats",
    response_model=Stats,
    responses={404: {"model": ErrorBody}},
    dependencies=[require(JOURNEYS_RUN)],
    summary="A journey's per-node counts and holdout lift",
)
def stats(runtime: RuntimeDep, name: str) -> dict[str, Any]:
    """Per node entered, sent, skipped by reason, converted; the treated runs against the holdout
    (two-proportion z-test)."""
    _published_or_404(runtime, name)
    return S.journey_stats(runtime, name, compare=holdout_test).to_dict()


@router.get(
    "/v1/persons/{person}/journeys",
    response_model=PersonJourneys,
    responses={404: {"model": ErrorBody}},
    dependencies=[require(PROFILES_READ)],
    summary="Why a person did or did not get a journey's messages",
)
def person_journeys(
    runtime: RuntimeDep,
    person: str,
    journey: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
) -> dict[str, Any]:
    """The person of any identifier: each run (entry, every step with its outcome and reason) and every
    policy decision about their sends."""
    try:
        return S.explain(runtime, person, journey=journey).to_dict()
    except InputError as exc:
        if exc.field == "person":
            raise ApiError(404, "person", exc.reason) from None
        raise
