"""QR short links for print, TV, packaging and letters: a scan lands on the site as a tagged `page` event.

`qr_link` signs a token (channels.links, purpose `q`) carrying the landing URL, the UTM tags
(utm_source, utm_medium = print|tv|packaging|letter, utm_campaign, utm_content = the placement) and
either a placement id or a recipient (person id, send key, and the recipient's user id when the
identity graph knows one). The short link is `<public_url>/q/<token>`.

`follow` is what `GET /q/{token}` does: verify the token, append the UTM tags to the landing URL,
and emit a `page` event with `context.campaign` {source, medium, name, content} for the scanning
device's anonymous id; with a recipient token the event also carries the recipient's user id, so
the scan ties the device to the person. A forged or altered token is refused (UnknownQr).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from omniweave.channels import links
from omniweave.collect.emit import emit
from omniweave.errors import InputError
from omniweave.runtime import Runtime

MEDIUMS = ("print", "tv", "packaging", "letter")
"""Where a QR code is printed or shown: its `utm_medium`."""
PURPOSE = "q"
SOURCE = "omniweave-qr"
"""The internal source scans are emitted under."""
MAX_URL = 2000
_SHORT = 200


class UnknownQr(InputError):
    """A QR token that is forged, altered, malformed or carries no http(s) landing URL."""


@dataclass(frozen=True)
class QrLink:
    """A short link and what it stands for."""

    url: str  # the short link to print: <public_url>/q/<token>
    token: str
    landing_url: str  # where a scan lands, with the UTM tags
    campaign: str
    medium: str
    source: str
    placement: str | None
    person_id: str | None
    user_id: str | None
    send_key: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Scan:
    """One followed QR link: where to send the browser and the page event that was recorded."""

    location: str
    anonymous_id: str
    event: dict[str, Any]


def _text(value: str | None, field: str, *, required: bool = False) -> str | None:
    if value is None or not str(value).strip():
        if required:
            raise InputError(f"{field} is empty; expected a short text", field=field)
        return None
    text = str(value).strip()
    if len(text) > _SHORT:
        raise InputError(f"{field} is {len(text)} characters long; expected at most {_SHORT}", field=field)
    return text


def check_landing(url: str) -> str:
    """`url` when it is an absolute http(s) URL with a host (so a short link can never redirect elsewhere)."""
    text = str(url or "").strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(text) > MAX_URL:
        raise InputError(
            f"got {url!r}; expected an absolute http:// or https:// URL of at most {MAX_URL} characters",
            field="landing_url",
        )
    return text


def with_utm(landing_url: str, tags: dict[str, str | None]) -> str:
    """`landing_url` with the UTM tags set (replacing tags of the same name, keeping every other parameter)."""
    parts = urlsplit(landing_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in tags]
    query += [(k, v) for k, v in tags.items() if v]
    return urlunsplit(parts._replace(query=urlencode(query)))


def qr_link(
    runtime: Runtime,
    landing_url: str,
    campaign: str,
    medium: str,
    placement: str | None = None,
    person_id: str | None = None,
    *,
    send_key: str | None = None,
    user_id: str | None = None,
    source: str | None = None,
) -> QrLink:
    """A signed short link for a QR code on `medium` (print, tv, packaging, letter) that lands on `landing_url`
    tagged with `campaign`, the medium, the source (default: the medium) and the placement.

    Give a `placement` (where the code is printed: `spring-poster-A3`) or a recipient (`person_id`, and
    `send_key` for a letter): a recipient's scan is tied to that person. The recipient's user id is looked
    up in the identity graph when not given. InputError names the field that is wrong.
    """
    landing = check_landing(landing_url)
    if medium not in MEDIUMS:
        raise InputError(f"got medium {medium!r}; expected one of {', '.join(MEDIUMS)}", field="medium")
    name = _text(campaign, "campaign", required=True)
    spot = _text(placement, "placement")
    person = _text(person_id, "person_id")
    key = _text(send_key, "send_key")
    if spot is None and person is None and key is None:
        raise InputError("a QR link needs a placement or a recipient (person_id / send_key)", field="placement")
    origin = _text(source, "source") or medium
    user = _text(user_id, "user_id") or (user_of(runtime, person) if person else None)
    payload: dict[str, Any] = {"t": landing, "s": origin, "m": medium, "c": name}
    for field, value in (("pl", spot), ("pid", person), ("k", key), ("u", user)):
        if value is not None:
            payload[field] = value
    token = links.sign(runtime, PURPOSE, payload)
    base = runtime.settings.channels.public_url.rstrip("/")
    tags = {"utm_source": origin, "utm_medium": medium, "utm_campaign": name, "utm_content": spot}
    return QrLink(
        f"{base}/q/{token}", token, with_utm(landing, tags), str(name), medium, origin, spot, person, user, key
    )


def user_of(runtime: Runtime, person_id: str) -> str | None:
    """A user id the identity graph holds for `person_id` (the smallest, for a stable choice), or None."""
    if not runtime.log.has_data("identities"):
        return None
    identities = runtime.warehouse().table("identities")
    found = identities.filter((identities.person_id == person_id) & (identities.kind == "user_id"))
    values = sorted(str(v) for v in found.select("value").to_pyarrow().column("value").to_pylist() if v)
    return values[0] if values else None


def _anonymous(cookie: str | None) -> tuple[str, bool]:
    """The device's anonymous id from the `ow_aid` cookie, or a new one (and True: set the cookie)."""
    if cookie and 8 <= len(cookie) <= 64 and all(c.isalnum() or c in "-_" for c in cookie):
        return cookie, False
    return str(uuid.uuid4()), True


def follow(
    runtime: Runtime,
    token: str,
    *,
    anonymous_id: str | None = None,
    user_agent: str | None = None,
    ip: str | None = None,
    now: float | None = None,
) -> tuple[Scan, bool]:
    """Follow a QR short link: the landing URL with its UTM tags and the `page` event recorded for the scan.

    `anonymous_id` is the `ow_aid` cookie of the scanning device, if it has one; the second value says
    whether a new anonymous id was made (the caller sets the cookie). Raises UnknownQr for a bad token.
    """
    payload = links.verify(runtime, PURPOSE, token)
    target = payload.get("t") if payload else None
    if payload is None or not isinstance(target, str):
        raise UnknownQr("unknown or forged QR link", field="token")
    try:
        target = check_landing(target)
    except InputError:
        raise UnknownQr("the QR link's landing URL is not http(s)", field="token") from None
    aid, fresh = _anonymous(anonymous_id)
    campaign = {"source": payload.get("s"), "medium": payload.get("m"), "name": payload.get("c")}
    if payload.get("pl"):
        campaign["content"] = payload["pl"]
    tags = {
        "utm_source": campaign["source"],
        "utm_medium": campaign["medium"],
        "utm_campaign": campaign["name"],
        "utm_content": campaign.get("content"),
    }
    location = with_utm(target, tags)
    at = time.time() if now is None else now
    parts = urlsplit(location)
    properties: dict[str, Any] = {"url": location, "path": parts.path or "/", "search": parts.query, "qr": True}
    for field, name in (("pl", "placement"), ("pid", "person_id"), ("k", "send_key")):
        if payload.get(field):
            properties[name] = payload[field]
    context: dict[str, Any] = {
        "campaign": {k: v for k, v in campaign.items() if v},
        "page": {"url": location, "path": parts.path or "/", "search": parts.query},
    }
    if user_agent:
        context["userAgent"] = user_agent[:500]
    if ip:
        context["ip"] = ip
    event: dict[str, Any] = {
        "type": "page",
        "name": "QR Code",
        "messageId": f"{SOURCE}-{uuid.uuid4().hex}",  # every scan is its own visit
        "anonymousId": aid,
        "timestamp": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
        "properties": properties,
        "context": context,
    }
    if payload.get("u"):
        event["userId"] = str(payload["u"])
    emit(runtime.store, SOURCE, [event])
    return Scan(location, aid, event), fresh
