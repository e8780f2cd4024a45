"""Offline to online: the QR short links printed on posters, packaging, letters and shown on TV.

    GET /q/{token}    302 to the signed landing URL with its UTM tags, a `page` event with
                      context.campaign for the scanning device (cookie `ow_aid`, set when absent)

    GET  /r/{token}    the RSVP page of a store event invitation, with a button that POSTs (records nothing:
                      link scanners prefetch)
    POST /r/{token}    the RSVP: one `Store Event RSVP` event for the recipient (a double click records once);
                      200 with a confirmation page, never a redirect

A forged, altered or malformed token gets 404 and records nothing. No auth: a phone's camera follows it.
"""

from __future__ import annotations

import html
from typing import Annotated, Any

from fastapi import APIRouter, Cookie, Header, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from omniweave.activate.service import bridges, qr
from omniweave.shells.api.deps import RuntimeDep
from omniweave.shells.api.errors import ApiError
from omniweave.shells.api.schemas import ErrorBody

router = APIRouter(tags=["bridges"])

COOKIE = "ow_aid"
COOKIE_SECONDS = 400 * 86400  # browsers cap cookie lifetimes at 400 days
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "unknown or forged QR link"}}


@router.get(
    "/q/{token:path}",  # a token with a slash (none is valid) is a 404 too, not a 307 to the one without
    response_class=RedirectResponse,
    status_code=302,
    responses={302: {"description": "redirect to the landing URL with its UTM tags"}, **_NOT_FOUND},
    summary="A QR short link",
)
def follow_qr(
    runtime: RuntimeDep,
    request: Request,
    token: str,
    ow_aid: Annotated[str | None, Cookie(include_in_schema=False)] = None,
    user_agent: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> RedirectResponse:
    """Record the scan as a `page` event (context.campaign from the link's UTM tags; with a recipient link,
    the recipient's user id) and redirect to the landing URL the link was signed with."""
    try:
        scan, fresh = qr.follow(
            runtime,
            token,
            anonymous_id=ow_aid,
            user_agent=user_agent,
            ip=request.client.host if request.client else None,
        )
    except qr.UnknownQr as exc:
        raise ApiError(404, "token", exc.reason) from None
    response = RedirectResponse(scan.location, status_code=302, headers={"Cache-Control": "no-store, private"})
    if fresh:
        response.set_cookie(
            COOKIE,
            scan.anonymous_id,
            max_age=COOKIE_SECONDS,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
    return response


_NO_STORE = {"Cache-Control": "no-store, private"}
_RSVP_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "unknown or forged RSVP link"}
}


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'><meta name='robots' content='noindex'>"
        f"<meta name='viewport' content='width=device-width'><title>{html.escape(title)}</title></head>"
        f"<body>{body}</body></html>",
        headers=_NO_STORE,
    )


def _describe(event: bridges.StoreEvent) -> str:
    return (
        f"<h1>{html.escape(event.event_name)}</h1>"
        f"<p>Store {html.escape(event.store_id)}, {html.escape(event.starts_at)}</p>"
    )


def _invitation(runtime: RuntimeDep, token: str) -> bridges.Invitation:
    try:
        return bridges.invitation(runtime, token)
    except bridges.UnknownRsvp as exc:
        raise ApiError(404, "token", exc.reason) from None


@router.get(
    "/r/{token}",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}, "description": "the RSVP page"}, **_RSVP_NOT_FOUND},
    summary="The RSVP page of a store event (does not record)",
)
def rsvp_page(runtime: RuntimeDep, token: str) -> HTMLResponse:
    """The store event and one button that POSTs to this URL: a GET records nothing (link scanners prefetch)."""
    invite = _invitation(runtime, token)
    action = html.escape(f"/r/{token}")
    return _page(
        invite.event.event_name,
        _describe(invite.event)
        + f"<form method='post' action='{action}'><button type='submit'>I will come</button></form>",
    )


@router.post(
    "/r/{token}",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}, "description": "the RSVP is recorded"}, **_RSVP_NOT_FOUND},
    summary="RSVP to a store event",
)
def rsvp_post(runtime: RuntimeDep, token: str) -> HTMLResponse:
    """Record a `Store Event RSVP` for the invitation's recipient (once, however often it is posted) and
    answer 200 with a confirmation page, never a redirect."""
    try:
        result = bridges.record_rsvp(runtime, token)
    except bridges.UnknownRsvp as exc:
        raise ApiError(404, "token", exc.reason) from None
    return _page(
        result.invitation.event.event_name,
        _describe(result.invitation.event) + "<p>Thank you: your place is noted. See you there.</p>",
    )
