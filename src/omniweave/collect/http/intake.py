"""Turning a parsed request body into inbox rows, and every rejected item into an error entry.

Single-event endpoints (`/v1/track`, `/t`, ...) carry one event whose type is the endpoint's;
batch endpoints (`/v1/batch`, `/v1/import`, `/b`) carry `{"batch": [...], "context": ...,
"sentAt": ..., "integrations": ...}`, and those batch-level fields apply to items that lack
them (the Segment and RudderStack libraries send them once per batch). Each item is validated
by `events.normalize.normalize_event` and must serialise, in canonical form, within the event limit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from omniweave.errors import EventError, InputError
from omniweave.events.normalize import normalize_event

log = logging.getLogger("omniweave.collector")

MAX_MESSAGE_ID_CHARS = 200  # the inbox's message_id column
_BATCH_SHARED = ("sentAt", "integrations")

Row = tuple[str, str, float, bytes]


@dataclass
class Intake:
    """The rows to commit and the items that were rejected (index, field, reason)."""

    rows: list[Row] = field(default_factory=list)
    errors: list[dict[str, object]] = field(default_factory=list)


def batch_items(payload: Any) -> list[Any]:
    """The items of a batch body, with batch-level context, sentAt and integrations applied."""
    if not isinstance(payload, dict):
        raise InputError(f"expected a JSON object with a batch array, got {type(payload).__name__}")
    items = payload.get("batch")
    if not isinstance(items, list):
        got = "nothing" if items is None else type(items).__name__
        raise InputError(f"expected an array of events, got {got}", field="batch")
    shared = {key: payload[key] for key in _BATCH_SHARED if payload.get(key) is not None}
    context = payload.get("context")
    if not shared and not isinstance(context, dict):
        return items
    for item in items:
        if not isinstance(item, dict):
            continue  # rejected with its index by normalize_event
        for key, value in shared.items():
            if item.get(key) is None:
                item[key] = value
        if isinstance(context, dict):
            own = item.get("context")
            if own is None:
                item["context"] = dict(context)
            elif isinstance(own, dict):
                item["context"] = {**context, **own}
    return items


def single_item(payload: Any, kind: str) -> list[Any]:
    """A single-event body as a one-item list; the endpoint decides the event's type."""
    if isinstance(payload, dict):
        payload["type"] = kind
    return [payload]


def build_rows(
    items: list[Any],
    source_id: str,
    *,
    received_at: datetime,
    received_ts: float,
    max_event_bytes: int,
    context_defaults: dict[str, Any] | None,
    guard: Callable[[dict[str, Any]], tuple[str, str] | None] | None = None,
) -> Intake:
    """Validate and serialise every item; valid ones become rows, invalid ones errors. `guard` (the
    privacy `IngestGuard`) may change a normalised event (collection rules) or refuse it: (field, reason)."""
    intake = Intake()
    rows, errors = intake.rows, intake.errors
    for index, raw in enumerate(items):
        try:
            event = normalize_event(raw, received_at=received_at, index=index, context_defaults=context_defaults)
            refused = guard(event) if guard is not None else None
            if refused is not None:
                raise EventError(refused[1], field=refused[0], record=index)
            message_id = event["messageId"]
            if len(message_id) > MAX_MESSAGE_ID_CHARS:
                raise EventError(
                    f"is {len(message_id)} characters long; the limit is {MAX_MESSAGE_ID_CHARS}",
                    field="messageId",
                    record=index,
                )
            try:
                payload = orjson.dumps(event)
            except orjson.JSONEncodeError as exc:
                raise EventError(f"cannot be stored as JSON: {exc}", record=index) from None
            if len(payload) > max_event_bytes:
                raise EventError(
                    f"the event is {len(payload)} bytes once normalised; the limit is {max_event_bytes} bytes",
                    record=index,
                )
        except EventError as exc:
            errors.append(exc.as_dict())
            continue
        except Exception as exc:  # noqa: BLE001 - a bug must cost one item, never the shared committer process
            log.exception("item %d of a request could not be validated", index)
            reason = f"the event could not be validated ({type(exc).__name__}); it was not stored"
            errors.append({"index": index, "field": None, "reason": reason})
            continue
        rows.append((source_id, message_id, received_ts, payload))
    return intake
