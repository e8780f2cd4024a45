"""The event model: Segment-spec events, validated and normalised.

`normalize_event` turns one raw event (as any Segment or RudderStack SDK sends it) into the
canonical form stored in the inbox and the event log, or raises `EventError` naming the item,
the field and the reason. It is pure and fast: the collector calls it for every event.

Canonical form (camelCase, as in the spec): type, messageId, userId, anonymousId, event, name,
groupId, previousId, timestamp, originalTimestamp, sentAt, receivedAt (ISO 8601, UTC, ms),
context, integrations, properties, traits.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from omniweave.errors import EventError
from omniweave.events import spec

_OBJECT_FIELDS = ("context", "integrations", "properties", "traits")
_UTM_TO_CAMPAIGN = {
    "utm_source": "source",
    "utm_medium": "medium",
    "utm_campaign": "name",
    "utm_term": "term",
    "utm_content": "content",
}
_MOBILE_LIBRARIES = (
    "analytics-ios",
    "analytics-android",
    "analytics-react-native",
    "analytics-kotlin",
    "analytics-swift",
    "analytics-flutter",
    "rudder-ios",
    "rudder-android",
    "rudder-react-native",
    "rudder-flutter",
)
_BROWSER_LIBRARIES = ("analytics.js", "analytics-next", "rudderstack-js", "rudder-sdk-js")


FUTURE_TOLERANCE = timedelta(hours=24)
"""How far past its receipt an event's (clock-corrected) time may lie; later ones are clamped to the receipt
time and flagged with `context.timestampClamped` (docs/collector.md, "Time rules")."""
_RANGE = "years 0001 to 9999 (UTC)"


def parse_timestamp(value: Any, *, field: str, index: int | None) -> datetime:
    """Parse an ISO 8601 string (or epoch seconds/milliseconds) into an aware UTC datetime.

    A time that cannot be represented in UTC (before 0001-01-01 or after 9999-12-31 once its offset is
    applied) is an EventError for that item, like any other unreadable time."""
    if isinstance(value, str):
        parsed = _parse_iso(value)
        if parsed is None:
            raise EventError(
                f"{value[:60]!r} is not an ISO 8601 timestamp (e.g. 2024-05-01T12:00:00Z)",
                field=field,
                record=index,
            )
        if parsed is _OUT_OF_RANGE:
            raise EventError(f"{value[:60]!r} falls outside {_RANGE} once converted to UTC", field=field, record=index)
        return parsed
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000.0 if value > 1e11 else float(value)
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise EventError(f"epoch time {value!r} falls outside {_RANGE}"[:200], field=field, record=index) from None
    raise EventError(
        f"expected an ISO 8601 timestamp string, got {type(value).__name__} {value!r}"[:200],
        field=field,
        record=index,
    )


_OUT_OF_RANGE = datetime.min.replace(tzinfo=UTC)  # a marker: `_parse_iso` caches failures too


@lru_cache(maxsize=4096)  # a request's sentAt repeats in each of its events
def _parse_iso(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is in year 0 in UTC; 9999-12-31T23:00-05:00 in year 10000
        return _OUT_OF_RANGE


def _canonical(value: Any) -> bool:
    """Whether a (parseable) timestamp string is already in the canonical form, e.g.
    2024-05-01T12:00:00.000Z (what most SDKs send): it is then stored as it came."""
    return isinstance(value, str) and len(value) == 24 and value[23] == "Z" and value[10] == "T" and value[19] == "."


@lru_cache(maxsize=1024)  # receivedAt and sentAt repeat across the events of a request
def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, the spec's own format."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # same text as isoformat(timespec="milliseconds") + "Z", at half the cost (the collector
    # formats four timestamps per event)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031 - fastest here
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond // 1000,
    )


def campaign_from_url(url: str) -> dict[str, str]:
    """The `context.campaign` object implied by a URL's UTM parameters (empty if none)."""
    return dict(_campaign_items(url))


@lru_cache(maxsize=4096)
def _campaign_items(url: str) -> tuple[tuple[str, str], ...]:
    # Landing-page URLs repeat across visitors, and parsing them is a tenth of the collector's
    # per-event cost: remember the answer (as a tuple, so that callers get their own dict).
    try:
        query = urlsplit(url).query
    except ValueError:
        return ()
    campaign: dict[str, str] = {}
    for key, value in parse_qsl(query):
        target = _UTM_TO_CAMPAIGN.get(key.lower())
        if target and value:
            campaign[target] = value
    return tuple(campaign.items())


def _id(raw: dict[str, Any], key: str, index: int | None) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise EventError(f"expected a string, got {type(value).__name__}", field=key, record=index)


def normalize_event(
    raw: Any,
    *,
    received_at: datetime,
    index: int | None = None,
    default_type: str | None = None,
    context_defaults: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate one raw event and return its canonical form.

    `default_type` is the type implied by the endpoint (`/v1/track` → "track"); a batch item
    carries its own. `context_defaults` (e.g. the client's IP) fill context keys that are absent.
    Raises `EventError` with the item index, the field and the reason.
    """
    if not isinstance(raw, dict):
        raise EventError(f"expected a JSON object, got {type(raw).__name__}", record=index)
    kind = _event_type(raw, default_type, index)
    user_id = _id(raw, "userId", index)
    anonymous_id = _id(raw, "anonymousId", index)
    if user_id is None and anonymous_id is None:
        raise EventError("every event needs a userId or an anonymousId", field="userId", record=index)

    event: dict[str, Any] = {"type": kind}
    message_id = _id(raw, "messageId", index)
    event["messageId"] = message_id or f"api-{uuid.uuid4()}"
    event["userId"] = user_id
    event["anonymousId"] = anonymous_id
    _add_objects(raw, event, index)
    _add_type_fields(kind, raw, event, index)
    _add_timestamps(raw, event, received_at, index)
    _complete_context(kind, event, context_defaults)
    return event


def _event_type(raw: dict[str, Any], default_type: str | None, index: int | None) -> str:
    """The event's type, lower-cased: its own `type`, else the one its endpoint implies."""
    kind = raw.get("type") or default_type
    if not isinstance(kind, str) or kind.lower() not in spec.EVENT_TYPES:
        raise EventError(
            f"unknown type {kind!r}; expected one of {', '.join(spec.EVENT_TYPES)}",
            field="type",
            record=index,
        )
    return kind.lower()


def _add_objects(raw: dict[str, Any], event: dict[str, Any], index: int | None) -> None:
    """Copy the object fields (properties, traits, context…), absent ones as empty objects."""
    for key in _OBJECT_FIELDS:
        value = raw.get(key)
        if value is None:
            event[key] = {}
        elif isinstance(value, dict):
            event[key] = value
        else:
            raise EventError(f"expected a JSON object, got {type(value).__name__}", field=key, record=index)


def _add_type_fields(kind: str, raw: dict[str, Any], event: dict[str, Any], index: int | None) -> None:
    """The fields only one type of call has: a track's event name, a page's name, a group's id, an alias's previous id."""
    if kind == "track":
        name = raw.get("event")
        if not isinstance(name, str) or not name.strip():
            raise EventError("a track call needs a non-empty event name", field="event", record=index)
        event["event"] = name.strip()
        if event["event"] in spec.ECOMMERCE_EVENTS or event["event"] in spec.EMAIL_EVENTS:
            _check_numeric(event["properties"], index)
    elif kind in ("page", "screen"):
        name = raw.get("name")
        if name is not None and not isinstance(name, str):
            raise EventError(f"expected a string, got {type(name).__name__}", field="name", record=index)
        event["name"] = name
        category = raw.get("category")  # the Python libraries send it top-level
        if isinstance(category, str) and category and "category" not in event["properties"]:
            event["properties"] = {**event["properties"], "category": category}
    elif kind == "group":
        group_id = _id(raw, "groupId", index)
        if group_id is None:
            raise EventError("a group call needs a groupId", field="groupId", record=index)
        event["groupId"] = group_id
    elif kind == "alias":
        previous_id = _id(raw, "previousId", index)
        if previous_id is None:
            raise EventError("an alias call needs a previousId", field="previousId", record=index)
        event["previousId"] = previous_id


def _add_timestamps(raw: dict[str, Any], event: dict[str, Any], received_at: datetime, index: int | None) -> None:
    """timestamp, originalTimestamp, sentAt and receivedAt, with clock-skew correction:
    timestamp = receivedAt - (sentAt - originalTimestamp). A canonical client string is kept as sent.

    The rules (docs/collector.md, "Time rules"): every time must lie within years 0001-9999 in UTC, and so
    must the corrected timestamp, else the item is rejected naming the field; a timestamp more than
    FUTURE_TOLERANCE after receipt is clamped to receivedAt and flagged with `context.timestampClamped`."""
    original_field = "originalTimestamp" if "originalTimestamp" in raw else "timestamp"
    original_raw = raw.get("originalTimestamp", raw.get("timestamp"))
    original = parse_timestamp(original_raw, field=original_field, index=index) if original_raw is not None else None
    sent = parse_timestamp(raw["sentAt"], field="sentAt", index=index) if raw.get("sentAt") is not None else None
    if original is not None and sent is not None:
        skew = sent - original
        try:
            timestamp = received_at - skew
        except OverflowError:
            raise EventError(
                f"{format_timestamp(sent)} with {original_field} {format_timestamp(original)} means the event "
                f"happened {abs(skew.days)} days {'before' if skew.days >= 0 else 'after'} it was sent; "
                f"corrected for that, its time falls outside {_RANGE}",
                field="sentAt",
                record=index,
            ) from None
    elif original is not None:
        timestamp = original
    else:
        timestamp = received_at
    if timestamp - received_at > FUTURE_TOLERANCE:
        event["context"] = {**event["context"], "timestampClamped": format_timestamp(timestamp)}
        timestamp = received_at
    event["timestamp"] = (
        original_raw if timestamp is original and _canonical(original_raw) else format_timestamp(timestamp)
    )
    if original is None:
        event["originalTimestamp"] = None
    else:
        event["originalTimestamp"] = original_raw if _canonical(original_raw) else format_timestamp(original)
    event["sentAt"] = format_timestamp(sent) if sent is not None else None
    event["receivedAt"] = format_timestamp(received_at)


def _complete_context(kind: str, event: dict[str, Any], context_defaults: dict[str, Any] | None) -> None:
    """Traits sent only in the context, the client's defaults (e.g. its IP), and the campaign implied
    by the page URL's UTM parameters when the event names none."""
    context = event["context"]
    if kind == "identify" and not event["traits"] and isinstance(context.get("traits"), dict):
        event["traits"] = context["traits"]  # RudderStack's libraries send traits only there
    if context_defaults:
        for key, value in context_defaults.items():
            context.setdefault(key, value)
    if not context.get("campaign"):
        page = context.get("page")
        url = page.get("url") if isinstance(page, dict) else None
        if not url and kind == "page":
            url = event["properties"].get("url")
        if isinstance(url, str):
            campaign = campaign_from_url(url)
            if campaign:
                context["campaign"] = campaign


def _check_numeric(properties: dict[str, Any], index: int | None) -> None:
    for key in spec.NUMERIC_PROPERTIES.intersection(properties):
        value = properties[key]
        if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            continue
        if isinstance(value, str):
            try:
                properties[key] = float(value)
                continue
            except ValueError:
                pass
        raise EventError(f"expected a number, got {value!r}"[:200], field=f"properties.{key}", record=index)


def infer_channel(event: dict[str, Any]) -> str:
    """The channel an event happened on: explicit `properties.channel`, else inferred."""
    properties = event.get("properties") or {}
    channel = properties.get("channel")
    if isinstance(channel, str) and channel:
        return channel.lower()
    name = event.get("event") or ""
    if name.startswith("Email ") or name == spec.UNSUBSCRIBED:
        return "email"
    if name.startswith("Push Notification"):
        return "push"
    context = event.get("context") or {}
    channel = context.get("channel")
    if isinstance(channel, str) and channel in spec.CHANNELS:
        return channel
    library = context.get("library")
    library_name = library.get("name", "") if isinstance(library, dict) else ""
    if library_name in _BROWSER_LIBRARIES or channel == "browser" or event.get("type") == "page":
        return "web"
    if library_name in _MOBILE_LIBRARIES or channel == "mobile" or event.get("type") == "screen":
        return "app"
    return "other"


def device_class(context: Any) -> str | None:
    """mobile / tablet / desktop for an event's `context`: an app's `device.type` (ios, android: mobile;
    any other type as it is, lower-cased), else the browser's `userAgent`; None when neither says.

    The same rule as `device_class_expr` in profiles.service.build, which applies it to rows of the event
    log written before the log kept this column.
    """
    if not isinstance(context, dict):
        return None
    device = context.get("device")
    kind = device.get("type") if isinstance(device, dict) else None
    if isinstance(kind, str):
        kind = kind.lower()
        return "mobile" if kind in ("ios", "android") else kind
    agent = context.get("userAgent")
    if not isinstance(agent, str):
        return None
    if "iPad" in agent or "Tablet" in agent:
        return "tablet"
    if "Mobi" in agent or "Android" in agent:
        return "mobile"
    return "desktop"


def context_columns(context: Any) -> tuple[str, str, str]:
    """The event log's flat copies of an event's `context`: (timezone, device class, the JSON text of
    `consent.categoryPreferences`), each "" when the context does not say (never None: a NULL in the
    log means a row written before the log had these columns)."""
    if not isinstance(context, dict):
        return "", "", ""
    zone = context.get("timezone")
    consent = context.get("consent")
    chosen = consent.get("categoryPreferences") if isinstance(consent, dict) else None
    return (
        zone if isinstance(zone, str) else "",
        device_class(context) or "",
        orjson.dumps(chosen).decode() if isinstance(chosen, dict) else "",
    )


PROPERTY_KEYS = (
    "revenue",
    "total",
    "products",
    "promotion",
    "issued_channel",
    "redeemed_channel",
    "campaign_id",
    "product_id",
    "category",
)
"""The `properties` the event log also keeps as columns of their own (`properties_<key>`): the e-commerce and
promotion fields every profile build reads (Segment's e-commerce spec names)."""


def property_columns(properties: Any) -> tuple[str, ...]:
    """The event log's flat copies of PROPERTY_KEYS from an event's `properties`: the text of each value as
    JSON reads it (a string as it is, a number or true/false as written, an object or array as its JSON),
    "" when absent or null (never None: a NULL in the log means a row written before these columns)."""
    if not isinstance(properties, dict):
        return ("",) * len(PROPERTY_KEYS)
    return tuple(_json_text(properties.get(key)) for key in PROPERTY_KEYS)


def _json_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # not a JSON value (normalised events never hold one)
        return str(value)


def deterministic_message_id(source: str, *key_parts: Any) -> str:
    """A messageId that is the same every time the same record of the same source is imported."""
    digest = hashlib.sha256("\x1f".join([source, *map(str, key_parts)]).encode()).hexdigest()
    return f"{source}-{digest[:32]}"
