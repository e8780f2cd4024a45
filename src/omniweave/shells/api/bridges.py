"""Offline to online: the QR short links printed on posters, packaging, letters and shown on TV.

    GET /q/{token}    302 to the signed landing URL with its UTM tags, a `page` event with
                      context.campaign for the scanning device (cookie `ow_aid`, set when absent)

A forged, altered or malformed token gets 404 and records nothing. No auth: a phone's camera follows it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Cookie, Header, Request
from fastapi.responses import RedirectResponse

from omniweave.activate.service import qr
from omniweave.shells.api.deps import RuntimeDep
from omniweave.shells.api.errors import ApiError
from omniweave.shells.api.schemas import ErrorBody

router = APIRouter(tags=["bridges"])

COOKIE = "ow_aid"
COOKIE_SECONDS = 400 * 86400  # browsers cap cookie lifetimes at 400 days
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "unknown or forged QR link"}}


@router.get(
    "/q/{token}",
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
