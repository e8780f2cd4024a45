"""SMS and WhatsApp provider webhooks: status callbacks and inbound messages (Twilio's shape).

    POST /v1/channels/{sms|whatsapp}/status    a message's status (queued … delivered, failed + ErrorCode)
    POST /v1/channels/{sms|whatsapp}/inbound   a message a person sent us (STOP, START, HELP, anything)

Both take Twilio's form body and its `X-Twilio-Signature`, checked against the URL under
`[channels] public_url` (and the URL as received); a bad or missing signature gets 403 and changes
nothing. No secret key: the provider signs instead. Handlers call channels/sms/service.py only (and an
inbound SMS also goes to forms/service.py, whose keyword confirms a sign-up).
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from omniweave.channels.sms.service import SignatureRefused, receive_inbound, record_status
from omniweave.forms.service import confirm_by_keyword
from omniweave.shells.api.deps import RuntimeDep
from omniweave.shells.api.errors import ApiError
from omniweave.shells.api.schemas import ErrorBody

router = APIRouter(tags=["channels"])

Channel = Literal["sms", "whatsapp"]


class StatusAnswer(BaseModel):
    """What a status callback did."""

    matched: bool
    send_key: str | None
    status: str
    event: str | None
    suppressed: bool


def _form_schema(fields: dict[str, str]) -> dict[str, Any]:
    properties = {name: {"type": "string", "description": text} for name, text in fields.items()}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": properties}}},
        }
    }


_STATUS_FORM = _form_schema(
    {
        "MessageSid": "the provider's id of the message (SM…)",
        "MessageStatus": "queued, sending, sent, delivered, undelivered, failed, read",
        "ErrorCode": "the provider's error code when undelivered or failed",
        "To": "the recipient",
        "From": "the sender",
        "AccountSid": "the account",
    }
)
_INBOUND_FORM = _form_schema(
    {
        "MessageSid": "the provider's id of the message",
        "From": "the person's number (whatsapp:+… on WhatsApp)",
        "To": "our number",
        "Body": "the text: STOP, START, HELP … or anything",
        "AccountSid": "the account",
    }
)
_REFUSED: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody},
    403: {"model": ErrorBody, "description": "bad or missing signature"},
}
_SIGNATURE = Header(
    default=None,
    alias="X-Twilio-Signature",
    description="base64(HMAC-SHA1(auth token, URL + sorted form keys and values))",
)


async def _signed_request(request: Request) -> tuple[list[str], list[tuple[str, str]]]:
    """The URLs the request may be signed for, and its form parameters in order."""
    body = await request.body()
    params = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    public = request.app.state.settings.channels.public_url.rstrip("/")
    query = f"?{request.url.query}" if request.url.query else ""
    urls = [f"{public}{request.url.path}{query}", str(request.url)]
    return urls, params


@router.post(
    "/v1/channels/{channel}/status",
    response_model=StatusAnswer,
    responses=_REFUSED,
    openapi_extra=_STATUS_FORM,
    summary="A provider's message status callback",
)
async def status_callback(
    channel: Channel, request: Request, runtime: RuntimeDep, signature: str | None = _SIGNATURE
) -> Any:
    """Record a status callback as a feedback event (SMS Delivered, WhatsApp Read …); 21610 and dead
    numbers are suppressed. 403 and nothing changed when the signature is bad or missing."""
    urls, params = await _signed_request(request)
    try:
        result = await run_in_threadpool(record_status, runtime, channel, urls, params, signature)
    except SignatureRefused as exc:
        raise ApiError(403, "X-Twilio-Signature", str(exc)) from exc
    return result.to_dict()


@router.post(
    "/v1/channels/{channel}/inbound",
    response_class=Response,
    responses={
        200: {
            "description": "TwiML: a HELP answer, or empty",
            "content": {"application/xml": {"schema": {"type": "string"}}},
        },
        **_REFUSED,
    },
    openapi_extra=_INBOUND_FORM,
    summary="A message a person sent us",
)
async def inbound_message(
    channel: Channel, request: Request, runtime: RuntimeDep, signature: str | None = _SIGNATURE
) -> Response:
    """STOP/STOPALL/UNSUBSCRIBE/CANCEL/END/QUIT unsubscribe the number on this channel, START/YES/UNSTOP
    subscribe it again, HELP/INFO get the help text; anything else becomes an "SMS Received" event.
    Every message opens WhatsApp's 24-hour window. 403 and nothing changed when the signature is bad."""
    urls, params = await _signed_request(request)
    try:
        result = await run_in_threadpool(receive_inbound, runtime, channel, urls, params, signature)
    except SignatureRefused as exc:
        raise ApiError(403, "X-Twilio-Signature", str(exc)) from exc
    if channel == "sms":  # YES (JA, …) confirms a sign-up form's SMS double opt-in (forms/service.py)
        said = dict(params)
        await run_in_threadpool(confirm_by_keyword, runtime, said.get("From", ""), said.get("Body", ""))
    return Response(result.twiml(), media_type="application/xml")
