"""`/v1/push`: web push for pages: the VAPID public key, and subscribing or unsubscribing a browser.

A page fetches `GET /v1/push/vapid-public-key` (no key needed: it is public), calls
`pushManager.subscribe({userVisibleOnly: true, applicationServerKey})`, and posts the resulting
`PushSubscription` with the person's userId or anonymousId to `POST /v1/push/subscriptions`,
authenticated with the source's write key like the collector. `DELETE /v1/push/subscriptions?endpoint=…`
removes it. The routes call channels/push/service.py only.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, Security
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field

from omniweave.channels.push.service import SubscribeRequest, subscribe, unsubscribe, vapid_public_key
from omniweave.collect.http.body import key_from_authorization
from omniweave.errors import AuthError, ConfigError
from omniweave.shells.api.deps import RuntimeDep
from omniweave.shells.api.errors import ApiError
from omniweave.shells.api.schemas import ErrorBody

_WRITE_KEY = APIKeyHeader(
    name="Authorization",
    scheme_name="writeKey",
    description="A source's write key (Basic with the key as user name, or Bearer), as the collector takes it.",
    auto_error=False,
)


def require_write_key(runtime: RuntimeDep, authorization: Annotated[str | None, Security(_WRITE_KEY)]) -> str:
    """The id of the source whose write key the request carries, or a 401."""
    try:
        key = key_from_authorization(authorization)
    except AuthError:
        key = None
    source = runtime.store.source_for_write_key(key) if key else None
    if source is None:
        raise ApiError(401, "Authorization", "a source's write key is required (Basic user name or Bearer)")
    return source


WriteKeySource = Annotated[str, Depends(require_write_key)]

router = APIRouter(prefix="/v1/push", tags=["push"])


class VapidPublicKey(BaseModel):
    """The key a page passes to `pushManager.subscribe()` as `applicationServerKey`."""

    publicKey: str = Field(description="base64url of the uncompressed P-256 point")


class PushKeys(BaseModel):
    """The subscription's keys as the browser gives them (base64url)."""

    p256dh: str = Field(max_length=200, description="the browser's P-256 public key (65 bytes)")
    auth: str = Field(max_length=100, description="the 16-byte auth secret")


class PushSubscriptionCreate(BaseModel):
    """`PushSubscription.toJSON()` plus whose browser it is (a userId or an anonymousId, or both)."""

    endpoint: str = Field(max_length=2000, description="the push service URL of this subscription")
    keys: PushKeys
    expirationTime: float | None = Field(None, description="as the browser gives it; not used")
    userId: str | None = Field(None, max_length=200)
    anonymousId: str | None = Field(None, max_length=200)
    userAgent: str | None = Field(None, max_length=500)


class PushSubscriptionPublic(BaseModel):
    """A stored subscription: its id (SHA-256 of the endpoint) and whether this request created it."""

    id: str
    new: bool
    userId: str | None
    anonymousId: str | None


class PushSubscriptionDeleted(BaseModel):
    deleted: bool


@router.get(
    "/vapid-public-key",
    response_model=VapidPublicKey,
    responses={404: {"model": ErrorBody, "description": "web push is not configured"}},
    summary="The VAPID public key pages subscribe with",
)
def get_vapid_public_key(runtime: RuntimeDep) -> dict[str, str]:
    """The application server key for `pushManager.subscribe()`; 404 when no VAPID key is configured."""
    try:
        return {"publicKey": vapid_public_key(runtime)}
    except ConfigError as exc:
        raise ApiError(404, "push", str(exc)) from None


@router.post(
    "/subscriptions",
    response_model=PushSubscriptionPublic,
    status_code=201,
    responses={
        200: {"model": PushSubscriptionPublic, "description": "the subscription was known: refreshed"},
        400: {"model": ErrorBody},
        401: {"model": ErrorBody},
    },
    summary="Store a browser's push subscription",
)
def post_subscription(
    runtime: RuntimeDep, _source: WriteKeySource, body: PushSubscriptionCreate, response: Response
) -> dict[str, Any]:
    """Store (or refresh) a browser's push subscription for a userId or anonymousId (201 new, 200 known)."""
    request = SubscribeRequest(
        endpoint=body.endpoint,
        p256dh=body.keys.p256dh,
        auth=body.keys.auth,
        user_id=body.userId,
        anonymous_id=body.anonymousId,
        user_agent=body.userAgent,
    )
    result = subscribe(runtime, request)
    if not result.new:
        response.status_code = 200
    return {"id": result.id, "new": result.new, "userId": result.user_id, "anonymousId": result.anonymous_id}


@router.delete(
    "/subscriptions",
    response_model=PushSubscriptionDeleted,
    responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}},
    summary="Remove a browser's push subscription",
)
def delete_subscription(
    runtime: RuntimeDep,
    _source: WriteKeySource,
    endpoint: Annotated[str, Query(min_length=1, max_length=2000, description="the subscription's endpoint")],
) -> dict[str, bool]:
    """Remove the subscription of `endpoint` (the browser unsubscribed); 404 when it is unknown."""
    if not unsubscribe(runtime, endpoint):
        raise ApiError(404, "endpoint", "no push subscription has this endpoint")
    return {"deleted": True}
