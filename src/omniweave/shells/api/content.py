"""`/v1/messages/{name}/preview`: what one person gets from a message on one channel (docs/content.md).

    GET /v1/messages/{name}/preview?person=…&channel=email[&not_personalised=true]

The same answer as `omniweave messages preview --format json` (activate/service/messages.py `preview`):
the rendition, the checker's findings and the notes — a person without personalisation consent is shown
with their personal values withheld and the fallbacks, and why a send would skip them. Needs
`profiles:read`; a role that sees personal data only masked (an analyst) gets the rendition without
personal values (as `not_personalised`) and every address in it masked.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from fastapi import Path as PathParam

from omniweave.activate.service.messages import PreviewRequest, preview
from omniweave.errors import InputError
from omniweave.privacy.roles import PROFILES_READ, Principal, mask_personal_data
from omniweave.shells.api.deps import RuntimeDep, require
from omniweave.shells.api.errors import ApiError, input_problems
from omniweave.shells.api.schemas import ErrorBody

router = APIRouter(
    prefix="/v1/messages",
    tags=["content"],
    responses={400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
)
Reader = Annotated[Principal, require(PROFILES_READ)]


@router.get("/{name}/preview", summary="What one person gets from a message on one channel")
def message_preview(
    runtime: RuntimeDep,
    reader: Reader,
    name: Annotated[str, PathParam(min_length=1, max_length=100)],
    person: Annotated[str, Query(min_length=1, max_length=500, description="a person id or kind:value")],
    channel: Annotated[str, Query(min_length=1, max_length=20, description="email, sms, whatsapp, push, print")],
    not_personalised: Annotated[
        bool, Query(description="as if the person had said no to personalisation (the fallbacks)")
    ] = False,
    max_sms_segments: Annotated[int, Query(ge=1, le=10)] = 2,
) -> dict[str, Any]:
    """The rendition, the findings and the notes, as `messages preview` shows them."""
    request = PreviewRequest(name, person, channel, max_sms_segments, not_personalised or reader.masks_pii)
    try:
        result = preview(runtime, request)
    except InputError as exc:
        problems = input_problems(exc, default_field="person")
        raise ApiError(400, problems[0][0] or "person", str(exc)) from None
    body: dict[str, Any] = orjson.loads(orjson.dumps(result.to_dict()))
    return mask_personal_data(body) if reader.masks_pii else body


__all__ = ["router"]
