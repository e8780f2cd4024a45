"""The REST API's request and response schemas (pydantic, at the edge only).

They describe what the routes send and accept, so `/openapi.json` documents every route; the
services below return frozen dataclasses, and the routers turn those into these models. Definitions
that are written (`SegmentPut`) are kept apart from what is read back (`SegmentPublic`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# --- errors -----------------------------------------------------------------------------------------


class Problem(BaseModel):
    """One problem with a request: the item (for batches), the field, and what was expected."""

    index: int | None = Field(None, description="the item of a batch, when the problem is one item's")
    field: str | None = Field(None, description="the field (a dotted path such as where.all[1].gt), if any")
    reason: str = Field(description="what was received and what is valid")


class ErrorBody(BaseModel):
    """The body of every refusal of the REST API: each problem, and one message for people."""

    success: Literal[False] = False
    errors: list[Problem]
    message: str


class CollectorError(BaseModel):
    """The body of every refusal of the collector; `code` and `message` are what SDKs read."""

    success: Literal[False] = False
    code: Literal["invalid_request", "unauthorized", "not_found", "rate_limited", "unavailable", "error"]
    message: str
    accepted: int = Field(description="events of this request that were stored all the same")
    errors: list[Problem]


class CollectorOk(BaseModel):
    """Every event of the request is durable in the inbox."""

    success: Literal[True] = True


# --- health -----------------------------------------------------------------------------------------


class LoaderHealth(BaseModel):
    running: bool = Field(description="a loader process runs beside this server (`omniweave serve`)")
    position: int = Field(description="the last inbox sequence number moved into the event log")
    lag: int = Field(description="inbox rows not yet in the event log")
    last_error: str | None
    restarts: int


class Health(BaseModel):
    """Liveness, the committer's counters and how far the loader is behind the inbox."""

    status: Literal["ok"] = "ok"
    inbox_last_seq: int
    collector: dict[str, int | float] = Field(
        description="frames, requests, events, requests_per_frame, commit_ms, restarts"
    )
    loader: LoaderHealth


class HealthError(BaseModel):
    """The store behind the server is down: the reason."""

    status: Literal["error"] = "error"
    error: str


# --- profiles ---------------------------------------------------------------------------------------


class Identifier(BaseModel):
    kind: str = Field(description="email, phone, user_id, anonymous_id, loyalty_card, ...")
    value: str


class PersonPublic(BaseModel):
    """One person: the profile row, every identifier, and the latest events on every channel."""

    person_id: str
    found_by: str = Field(description="how the reference matched, e.g. email:ann@example.com")
    profile: dict[str, Any] | None = Field(description="the traits; null until `omniweave profiles build` ran")
    identifiers: list[Identifier]
    timeline: list[dict[str, Any]] = Field(
        description="timestamp, channel, type, event, source, message_id; newest first"
    )


# --- segments ---------------------------------------------------------------------------------------


class Persona(BaseModel):
    target_kpis: list[str]
    preferred_channels: list[str]


class SegmentPublic(BaseModel):
    """A segment as listed: what it is, where its definition comes from and its current size."""

    id: str
    name: str | None
    description: str | None
    source: str = Field(description="the definition's file name (library or project)")
    persona: Persona | None
    members: int | None = Field(description="members at the last evaluation; null if never evaluated")


class SegmentWithMembers(SegmentPublic):
    person_ids: list[str] = Field(description="the first 1000 members, sorted")


class SegmentPut(BaseModel):
    """A segment definition (docs/segments.md); checked by the segment language, every problem at once."""

    model_config = ConfigDict(extra="allow")  # unknown fields are reported by the language's own check

    id: str | None = Field(None, description="defaults to the path's id; must equal it")
    name: str | None = None
    description: str | None = None
    where: dict[str, Any] = Field(description="the condition tree: all/any/not, trait, did, segment, ...")
    persona: dict[str, Any] | None = None
    tags: list[str] | None = None


# --- the collector (documentation of its raw routes) ------------------------------------------------


class SegmentEvent(BaseModel):
    """One event of the Segment spec (https://segment.com/docs/connections/spec/); other fields pass through."""

    model_config = ConfigDict(extra="allow")

    type: Literal["track", "identify", "page", "screen", "group", "alias"] | None = Field(
        None, description="required in a batch; on a single-event path the path decides it"
    )
    messageId: str | None = Field(None, description="deduplicates retries; generated if absent")
    userId: str | None = None
    anonymousId: str | None = None
    event: str | None = Field(None, description="a track event's name")
    name: str | None = Field(None, description="a page's or screen's name")
    groupId: str | None = None
    previousId: str | None = None
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    timestamp: str | None = Field(None, description="ISO 8601; when it happened")
    sentAt: str | None = None
    writeKey: str | None = Field(None, description="analytics.js puts the write key here")


class SegmentBatch(BaseModel):
    """A batch of events; batch-level context, sentAt and integrations apply to items that lack them."""

    model_config = ConfigDict(extra="allow")

    batch: list[SegmentEvent]
    context: dict[str, Any] | None = None
    sentAt: str | None = None
    integrations: dict[str, Any] | None = None
    writeKey: str | None = None
