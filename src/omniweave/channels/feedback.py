"""Feedback events: what omniweave observes about its own messages, as ordinary Segment events.

Every channel reports what became of a message (sent, delivered, opened, clicked, bounced, STOP,
unsubscribed, received) with `event_for`, and the service layer hands the events to
`collect.emit.emit(store, SOURCE, events)`, so profiles, segments, KPIs and attribution see them
with no special case. The names follow Segment's e-mail spec ("Email Delivered", "Email Bounced",
"Unsubscribed" …) and use the same shape for the other channels ("SMS Delivered", "WhatsApp Read").

Shape of every event:

    type "track", event NAME, anonymousId "<channel>:<address>", timestamp,
    context.traits {"phone" | "email": address}   (identity links it to the person)
    properties {channel, address, send_key, person_id, campaign, message_name, …}

`messageId` is deterministic (`events.normalize.deterministic_message_id`) over the name and the
send key (or the caller's `id_parts`), so a provider retrying a callback, or the dispatcher and a
status callback both reporting "SMS Sent", add one event. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from omniweave.events.normalize import deterministic_message_id

SOURCE = "omniweave-channels"
"""The internal source feedback events enter the inbox under."""

LABELS = {
    "email": "Email",
    "sms": "SMS",
    "whatsapp": "WhatsApp",
    "push": "Push",
    "webhook": "Webhook",
    "print": "Letter",
    "ads": "Audience",
}
"""How each channel is written at the start of its event names."""

_TRAIT = {"email": "email", "sms": "phone", "whatsapp": "phone"}


def event_name(channel: str, what: str) -> str:
    """`"SMS Delivered"` for ("sms", "Delivered"): the channel's label, then what happened."""
    return f"{LABELS.get(channel, channel.title())} {what}"


def event_for(
    name: str,
    *,
    channel: str,
    address: str,
    at: float,
    send_key: str | None = None,
    person_id: str | None = None,
    campaign: str | None = None,
    message_name: str | None = None,
    properties: Mapping[str, Any] | None = None,
    id_parts: Sequence[Any] = (),
) -> dict[str, Any]:
    """One feedback event `name` about `address` on `channel` at `at` (epoch seconds).

    `id_parts` make the messageId when there is no send key (an inbound message: its provider id);
    otherwise the name and the send key do, so one fact about one send is one event.
    """
    parts = tuple(id_parts) or (send_key or "", address)
    props: dict[str, Any] = {"channel": channel, "address": address}
    for key, value in (
        ("send_key", send_key),
        ("person_id", person_id),
        ("campaign", campaign),
        ("message_name", message_name),
    ):
        if value is not None:
            props[key] = value
    props.update(properties or {})
    event: dict[str, Any] = {
        "type": "track",
        "event": name,
        "anonymousId": f"{channel}:{address}",
        "messageId": deterministic_message_id(SOURCE, channel, name, *parts),
        "timestamp": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
        "properties": props,
    }
    trait = _TRAIT.get(channel)
    if trait is not None:
        event["context"] = {"traits": {trait: address}}
    if campaign:
        event.setdefault("context", {})["campaign"] = {"name": campaign}
    return event
