"""The Segment event model: validation, normalisation, clock skew, UTM campaign, channels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omniweave.errors import EventError, InputError
from omniweave.events import spec
from omniweave.events.normalize import (
    campaign_from_url,
    deterministic_message_id,
    format_timestamp,
    infer_channel,
    normalize_event,
    parse_timestamp,
)

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def norm(raw, **kw):
    return normalize_event(raw, received_at=NOW, **kw)


def test_track_is_normalised_to_the_canonical_form():
    event = norm(
        {
            "type": "track",
            "event": " Order Completed ",
            "userId": 42,
            "messageId": "m1",
            "properties": {"revenue": "12.5", "currency": "EUR"},
        }
    )
    assert event["type"] == "track"
    assert event["event"] == spec.ORDER_COMPLETED
    assert event["userId"] == "42" and event["anonymousId"] is None
    assert event["properties"]["revenue"] == 12.5
    assert event["receivedAt"] == "2026-11-23T12:00:00.000Z"
    assert event["timestamp"] == event["receivedAt"]
    assert event["context"] == {} and event["integrations"] == {} and event["traits"] == {}


def test_clock_skew_is_corrected():
    event = norm(
        {
            "type": "track",
            "event": "x",
            "anonymousId": "a",
            "originalTimestamp": "2026-11-23T13:00:00Z",
            "sentAt": "2026-11-23T13:00:05Z",
        }
    )
    # the device clock is 1 h fast: timestamp = receivedAt - (sentAt - originalTimestamp)
    assert event["timestamp"] == "2026-11-23T11:59:55.000Z"
    assert event["originalTimestamp"] == "2026-11-23T13:00:00.000Z"
    assert event["sentAt"] == "2026-11-23T13:00:05.000Z"


def test_a_historical_timestamp_without_sent_at_is_kept():
    event = norm({"type": "identify", "userId": "u", "timestamp": "2020-01-01T00:00:00+02:00"})
    assert event["timestamp"] == "2019-12-31T22:00:00.000Z"


def test_campaign_is_filled_from_utm_parameters_when_absent():
    url = "https://shop.example/p?utm_source=Google&utm_medium=cpc&utm_campaign=winter&utm_term=boots&utm_content=a"
    event = norm({"type": "page", "anonymousId": "a", "context": {"page": {"url": url}}})
    assert event["context"]["campaign"] == {
        "source": "Google",
        "medium": "cpc",
        "name": "winter",
        "term": "boots",
        "content": "a",
    }
    kept = norm(
        {"type": "page", "anonymousId": "a", "context": {"page": {"url": url}, "campaign": {"name": "explicit"}}}
    )
    assert kept["context"]["campaign"] == {"name": "explicit"}
    assert campaign_from_url("not a url") == {}


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        ("not an object", None, "JSON object"),
        ({"type": "track", "event": "x"}, "userId", "userId or an anonymousId"),
        ({"type": "bogus", "userId": "u"}, "type", "unknown type"),
        ({"userId": "u"}, "type", "unknown type"),
        ({"type": "track", "userId": "u"}, "event", "event name"),
        ({"type": "track", "userId": "u", "event": "  "}, "event", "event name"),
        ({"type": "group", "userId": "u"}, "groupId", "groupId"),
        ({"type": "alias", "userId": "u"}, "previousId", "previousId"),
        ({"type": "track", "userId": "u", "event": "x", "timestamp": "yesterday"}, "timestamp", "ISO 8601"),
        ({"type": "track", "userId": "u", "event": "x", "sentAt": "32/13/2020"}, "sentAt", "ISO 8601"),
        ({"type": "track", "userId": "u", "event": "x", "properties": [1]}, "properties", "JSON object"),
        ({"type": "track", "userId": {"a": 1}, "event": "x"}, "userId", "string"),
        (
            {"type": "track", "userId": "u", "event": spec.ORDER_COMPLETED, "properties": {"revenue": "lots"}},
            "properties.revenue",
            "number",
        ),
    ],
)
def test_bad_events_name_the_item_the_field_and_the_reason(raw, field, fragment):
    with pytest.raises(EventError) as info:
        norm(raw, index=3)
    error = info.value
    assert isinstance(error, InputError) and isinstance(error, ValueError)
    assert error.record == 3
    assert error.field == field
    assert fragment in error.reason
    assert error.as_dict() == {"index": 3, "field": field, "reason": error.reason}


def test_default_type_comes_from_the_endpoint():
    assert norm({"event": "x", "userId": "u"}, default_type="track")["type"] == "track"


def test_channels_are_inferred():
    assert infer_channel({"type": "track", "event": "x", "properties": {"channel": "Store"}}) == "store"
    assert infer_channel({"type": "track", "event": spec.EMAIL_OPENED}) == "email"
    assert infer_channel({"type": "page", "event": None}) == "web"
    assert infer_channel({"type": "screen"}) == "app"
    assert infer_channel({"type": "track", "event": "x", "context": {"library": {"name": "analytics.js"}}}) == "web"
    assert infer_channel({"type": "track", "event": "x"}) == "other"


def test_deterministic_message_ids():
    assert deterministic_message_id("till", "T1") == deterministic_message_id("till", "T1")
    assert deterministic_message_id("till", "T1") != deterministic_message_id("till", "T2")
    assert deterministic_message_id("till", "T1") != deterministic_message_id("coupons", "T1")


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_timestamps_round_trip_at_millisecond_precision(moment):
    text = format_timestamp(moment)
    assert text.endswith("Z") and len(text) == 24
    back = parse_timestamp(text, field="timestamp", index=None)
    assert abs(back - moment) < timedelta(milliseconds=1)


def test_epoch_numbers_are_accepted():
    assert parse_timestamp(0, field="t", index=None) == datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_timestamp(1_700_000_000_000, field="t", index=None) == datetime.fromtimestamp(1_700_000_000, UTC)


def test_identify_traits_fall_back_to_context_traits():
    event = norm({"type": "identify", "userId": "u", "context": {"traits": {"email": "a@b.c"}}})
    assert event["traits"] == {"email": "a@b.c"}
    explicit = norm({"type": "identify", "userId": "u", "traits": {"x": 1}, "context": {"traits": {"y": 2}}})
    assert explicit["traits"] == {"x": 1}


def test_top_level_page_category_is_kept():
    event = norm({"type": "page", "anonymousId": "a", "name": "Boots", "category": "Shoes"})
    assert event["properties"] == {"category": "Shoes"}
