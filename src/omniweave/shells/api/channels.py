"""The links in omniweave's messages and inbound e-mail feedback.

    POST /u/{token}              one-click unsubscribe (RFC 8058): no cookies, no auth; 200, never a redirect
    GET  /u/{token}              a page with a button that POSTs (a GET never unsubscribes: link scanners)
    GET  /c/{token}              a tracked click: 302 to the signed target (no open redirect) + Email Link Clicked
    GET  /o/{token}.gif          the open pixel: a 1x1 GIF + Email Opened (unreliable; see docs/channels.md)
    POST /v1/inbound/email/dsn   a delivery status notification (RFC 3464), secret key required: bounces

A forged, altered or malformed token gets 404 and changes nothing.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from pydantic import BaseModel

from omniweave.channels import service
from omniweave.channels.email.dsn import MAX_DSN_BYTES
from omniweave.errors import InputError
from omniweave.shells.api.deps import SECRET_KEY, RuntimeDep
from omniweave.shells.api.errors import ApiError
from omniweave.shells.api.schemas import ErrorBody

router = APIRouter(tags=["channels"])

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
"""A transparent 1x1 GIF."""

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "unknown or forged link"}}
_NO_STORE = {"Cache-Control": "no-store, private"}


def _refuse(exc: service.UnknownLink) -> ApiError:
    return ApiError(404, "token", exc.reason)


@router.post(
    "/u/{token}",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "unsubscribed"}, **_NOT_FOUND},
    summary="One-click unsubscribe (RFC 8058)",
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {"type": "object", "properties": {"List-Unsubscribe": {"type": "string"}}}
                }
            },
        }
    },
)
def unsubscribe_post(runtime: RuntimeDep, token: str) -> PlainTextResponse:
    """Unsubscribe the address the signed token names (mail clients POST `List-Unsubscribe=One-Click`
    without cookies); the answer is 200 with a short text and never a redirect (RFC 8058)."""
    try:
        result = service.unsubscribe(runtime, token)
    except service.UnknownLink as exc:
        raise _refuse(exc) from None
    return PlainTextResponse(
        f"You are unsubscribed: no more {result.channel} messages will be sent to this address.\n",
        headers=_NO_STORE,
    )


@router.get(
    "/u/{token}",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}, "description": "the unsubscribe page"}, **_NOT_FOUND},
    summary="The unsubscribe page (does not unsubscribe)",
)
def unsubscribe_page(runtime: RuntimeDep, token: str) -> HTMLResponse:
    """A page with one button that POSTs to this URL: a GET never unsubscribes (link scanners prefetch)."""
    if service.links.verify(runtime, "u", token) is None:
        raise ApiError(404, "token", "unknown or forged unsubscribe link")
    action = html.escape(f"/u/{token}")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><meta name='robots' content='noindex'>"
        "<title>Unsubscribe</title></head><body>"
        "<p>Do you want to stop receiving these messages?</p>"
        f"<form method='post' action='{action}'>"
        "<input type='hidden' name='List-Unsubscribe' value='One-Click'>"
        "<button type='submit'>Unsubscribe</button></form></body></html>"
    )
    return HTMLResponse(page, headers=_NO_STORE)


@router.get(
    "/c/{token}",
    response_class=RedirectResponse,
    status_code=302,
    responses={302: {"description": "redirect to the link's signed target"}, **_NOT_FOUND},
    summary="A tracked link",
)
def follow_click(runtime: RuntimeDep, token: str) -> RedirectResponse:
    """Record `Email Link Clicked` and redirect to the target the token was signed with (nothing else)."""
    try:
        result = service.click(runtime, token)
    except service.UnknownLink as exc:
        raise _refuse(exc) from None
    assert result.target is not None
    return RedirectResponse(result.target, status_code=302, headers=_NO_STORE)


@router.get(
    "/o/{token}.gif",
    response_class=Response,
    responses={200: {"content": {"image/gif": {}}, "description": "a 1x1 transparent GIF"}, **_NOT_FOUND},
    summary="The open pixel",
)
def open_pixel(runtime: RuntimeDep, token: str) -> Response:
    """Record `Email Opened` and answer a 1x1 GIF (opens are unreliable: see docs/channels.md)."""
    try:
        service.open(runtime, token)
    except service.UnknownLink as exc:
        raise _refuse(exc) from None
    return Response(PIXEL, media_type="image/gif", headers=_NO_STORE)


class DsnRecipientPublic(BaseModel):
    """One recipient of a DSN and what it did."""

    address: str
    action: str
    status: str
    bounce_type: str
    diagnostic: str
    original_message_id: str | None
    suppressed: bool
    send_key: str | None


class DsnResult(BaseModel):
    """The failed and delayed recipients a DSN named."""

    recipients: list[DsnRecipientPublic]


@router.post(
    "/v1/inbound/email/dsn",
    response_model=DsnResult,
    dependencies=[SECRET_KEY],
    responses={
        400: {"model": ErrorBody},
        401: {"model": ErrorBody},
        403: {"model": ErrorBody},  # a write key
        413: {"model": ErrorBody},
    },
    summary="A delivery status notification (bounce)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "message/rfc822": {"schema": {"type": "string", "format": "binary"}},
                "text/plain": {"schema": {"type": "string"}},
            },
        }
    },
)
async def inbound_dsn(runtime: RuntimeDep, request: Request) -> dict[str, Any]:
    """A DSN mail (RFC 3464, `multipart/report; report-type=delivery-status`) as the body: 5.x.x
    suppresses the recipient (hard bounce), 4.x.x counts a soft bounce (the third suppresses)."""
    from starlette.concurrency import run_in_threadpool

    raw = await request.body()
    if len(raw) > MAX_DSN_BYTES:
        raise ApiError(413, "body", f"the DSN is {len(raw)} bytes; at most {MAX_DSN_BYTES} are accepted")
    try:
        result = await run_in_threadpool(service.bounce_from_dsn, runtime, raw)
    except InputError as exc:
        raise ApiError(400, exc.field or "body", exc.reason) from None
    return result.to_dict()
