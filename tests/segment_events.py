"""Building Segment-spec events for tests: one call per event, normalised as the collector would."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from omniweave.events.normalize import normalize_event


def segment_event(
    n: int,
    at: str,
    *,
    received_at: datetime,
    type: str = "track",
    event: str | None = None,
    name: str | None = None,
    user: str | None = None,
    anon: str | None = None,
    context: dict[str, Any] | None = None,
    traits: dict[str, Any] | None = None,
    **properties: Any,
) -> dict[str, Any]:
    """Event `m<n>` at `at` (ISO text), as `normalize_event` returns it; absent ids and traits are left out.
    `name` is a page or screen call's name."""
    raw: dict[str, Any] = {
        "type": type,
        "messageId": f"m{n:03d}",
        "timestamp": at,
        "context": context or {},
        "properties": properties,
    }
    if event:
        raw["event"] = event
    if name:
        raw["name"] = name
    if user:
        raw["userId"] = user
    if anon:
        raw["anonymousId"] = anon
    if traits:
        raw["traits"] = traits
    return normalize_event(raw, received_at=received_at)
