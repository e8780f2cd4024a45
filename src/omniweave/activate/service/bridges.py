"""Store events promoted online: a signed RSVP link in an invitation, answered with one click.

`rsvp_link` signs a token (channels.links, purpose `r`) carrying the store event (`event_id`,
`event_name`, `store_id`, `starts_at`), the recipient (person id, send key, the recipient's user id —
looked up in the identity graph as QR links do — and the address the invitation went to) and where the
invitation came from (the channel and campaign). The link is `<public_url>/r/<token>`.

`invitation` reads a token for the RSVP page (`GET /r/{token}`), recording nothing: link scanners
prefetch links in mails. `record_rsvp` is what the page's button does (`POST /r/{token}`): a
`Store Event RSVP` event for the recipient with properties event_id, event_name, store_id, starts_at,
channel, campaign and send_key. Its messageId is derived from the event and the recipient, so a double
click records one event. The attendance at the door is the `store_visits` import (visit_type `event`
→ `Store Event Attended`) with the same `event_id` / `event_name` properties, so a journey can match
an answer with a visit. A forged or altered token is refused (UnknownRsvp).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from omniweave.activate.service.qr import user_of
from omniweave.channels import links
from omniweave.collect.emit import emit
from omniweave.errors import InputError
from omniweave.events import spec
from omniweave.events.normalize import deterministic_message_id
from omniweave.runtime import Runtime

PURPOSE = "r"
SOURCE = "omniweave-rsvp"
"""The internal source RSVPs are emitted under."""
_SHORT = 200


class UnknownRsvp(InputError):
    """An RSVP token that is forged, altered, malformed or lacks the store event."""


@dataclass(frozen=True)
class StoreEvent:
    """An in-store event people are invited to."""

    event_id: str
    event_name: str
    store_id: str
    starts_at: str  # ISO 8601, as given

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RsvpLink:
    """An RSVP link and who it answers for."""

    url: str  # <public_url>/r/<token>
    token: str
    event: StoreEvent
    person_id: str | None
    user_id: str | None
    send_key: str | None
    channel: str | None
    campaign: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Invitation:
    """What a valid RSVP token says: the store event and the recipient."""

    event: StoreEvent
    person_id: str | None
    user_id: str | None
    send_key: str | None
    address: str | None
    channel: str | None
    campaign: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Rsvp:
    """One answered invitation: the event recorded (or already recorded by an earlier click)."""

    invitation: Invitation
    message_id: str
    recorded: bool  # False when this recipient had already answered this event

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text(value: str | None, field: str, *, required: bool = False) -> str | None:
    if value is None or not str(value).strip():
        if required:
            raise InputError(f"{field} is empty; expected a short text", field=field)
        return None
    text = str(value).strip()
    if len(text) > _SHORT:
        raise InputError(f"{field} is {len(text)} characters long; expected at most {_SHORT}", field=field)
    return text


def _starts_at(value: str) -> str:
    text = _text(value, "starts_at", required=True) or ""
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"got {value!r}; expected an ISO 8601 date and time (e.g. 2026-05-07T18:00:00+01:00)", field="starts_at"
        ) from None
    return text


def rsvp_link(
    runtime: Runtime,
    event_id: str,
    event_name: str,
    store_id: str,
    starts_at: str,
    *,
    person_id: str | None = None,
    send_key: str | None = None,
    user_id: str | None = None,
    address: str | None = None,
    channel: str | None = None,
    campaign: str | None = None,
) -> RsvpLink:
    """A signed RSVP link for the store event, answering for one recipient (`person_id`, `send_key` or
    `user_id`; the user id is looked up in the identity graph when not given) invited through `channel`
    (one of events.spec.CHANNELS) for `campaign`. InputError names the field that is wrong."""
    event = StoreEvent(
        str(_text(event_id, "event_id", required=True)),
        str(_text(event_name, "event_name", required=True)),
        str(_text(store_id, "store_id", required=True)),
        _starts_at(starts_at),
    )
    person = _text(person_id, "person_id")
    key = _text(send_key, "send_key")
    user = _text(user_id, "user_id") or (user_of(runtime, person) if person else None)
    if person is None and key is None and user is None:
        raise InputError("an RSVP link needs a recipient (person_id, send_key or user_id)", field="person_id")
    via = _text(channel, "channel")
    if via is not None and via not in spec.CHANNELS:
        raise InputError(f"got channel {via!r}; expected one of {', '.join(spec.CHANNELS)}", field="channel")
    name = _text(campaign, "campaign")
    payload: dict[str, Any] = {"e": event.event_id, "n": event.event_name, "st": event.store_id, "at": event.starts_at}
    for field, value in (
        ("pid", person),
        ("k", key),
        ("u", user),
        ("a", _text(address, "address")),
        ("ch", via),
        ("c", name),
    ):
        if value is not None:
            payload[field] = value
    token = links.sign(runtime, PURPOSE, payload)
    base = runtime.settings.channels.public_url.rstrip("/")
    return RsvpLink(f"{base}/r/{token}", token, event, person, user, key, via, name)


def invitation(runtime: Runtime, token: str) -> Invitation:
    """What the RSVP token says, recording nothing (the page a GET shows). Raises UnknownRsvp for a bad token."""
    payload = links.verify(runtime, PURPOSE, token)
    fields = ("e", "n", "st", "at")
    if payload is None or not all(isinstance(payload.get(f), str) and payload[f] for f in fields):
        raise UnknownRsvp("unknown or forged RSVP link", field="token")
    if not any(payload.get(f) for f in ("pid", "k", "u")):
        raise UnknownRsvp("the RSVP link names no recipient", field="token")

    def opt(name: str) -> str | None:
        value = payload.get(name)
        return str(value) if value else None

    event = StoreEvent(payload["e"], payload["n"], payload["st"], payload["at"])
    return Invitation(event, opt("pid"), opt("u"), opt("k"), opt("a"), opt("ch"), opt("c"))


def rsvp_event(invite: Invitation, at: float) -> dict[str, Any]:
    """The `Store Event RSVP` event for an invitation answered at `at` (epoch seconds); its messageId is
    the same for every answer of this recipient to this store event."""
    recipient = invite.user_id or invite.person_id or invite.send_key
    properties: dict[str, Any] = {**invite.event.to_dict(), "rsvp": "yes"}
    for name, value in (
        ("channel", invite.channel),
        ("campaign", invite.campaign),
        ("send_key", invite.send_key),
        ("person_id", invite.person_id),
    ):
        if value is not None:
            properties[name] = value
    event: dict[str, Any] = {
        "type": "track",
        "event": spec.EVENT_RSVP,
        "messageId": deterministic_message_id(SOURCE, invite.event.event_id, recipient),
        "timestamp": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
        "properties": properties,
    }
    if invite.user_id:
        event["userId"] = invite.user_id
    elif invite.channel and invite.address:  # the same anonymous id the channel's feedback events use
        event["anonymousId"] = f"{invite.channel}:{invite.address}"
    else:
        event["anonymousId"] = f"rsvp:{invite.person_id or invite.send_key}"
    if invite.campaign:
        event["context"] = {"campaign": {"name": invite.campaign, "medium": invite.channel or "store"}}
    return event


def record_rsvp(runtime: Runtime, token: str, *, now: float | None = None) -> Rsvp:
    """Record the recipient's RSVP to the store event the token names (`POST /r/{token}`): one
    `Store Event RSVP` event however often the button is pressed. Raises UnknownRsvp for a bad token."""
    invite = invitation(runtime, token)
    event = rsvp_event(invite, time.time() if now is None else now)
    added = emit(runtime.store, SOURCE, [event])
    return Rsvp(invite, event["messageId"], added > 0)
