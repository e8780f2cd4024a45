"""The reach channels in `open_channels` and `dispatcher_for`: offline with the shipped fakes, outcomes as events."""

from __future__ import annotations

import orjson
import pytest

from omniweave.channels import service
from omniweave.channels.ads import audience_message
from omniweave.channels.port import Message
from omniweave.channels.push.fake import FakeBrowser
from omniweave.channels.push.service import SubscribeRequest, subscribe
from omniweave.errors import ConfigError
from omniweave.runtime import Runtime
from omniweave.settings import ChannelsSettings, Settings, WebhookChannelSettings


def _events(runtime: Runtime) -> list[dict]:
    return [orjson.loads(row.payload) for row in runtime.store.read(0)]


def test_every_reach_channel_sends_offline_and_reports_events(runtime):
    channels = service.open_channels(runtime, fake=True)
    assert {"push", "webhook", "print", "ads"} <= set(channels)
    browser = FakeBrowser("https://push.example.net/wpush/v2/abc")
    subscribe(runtime, SubscribeRequest.from_json({**browser.subscription(), "userId": "u-1"}))
    d = service.dispatcher_for(runtime, channels)
    results = [
        d.send(Message("push", browser.endpoint, {"title": "Hi"}, person_id="P1", campaign="c"), "push-1"),
        d.send(Message("webhook", "default", {"payload": {"x": 1}}, person_id="P1"), "hook-1"),
        d.send(Message("webhook", "default", {"payload": {"x": 1}}), "hook-1"),  # the same key: once
        d.send(
            Message("print", "1 High St", {"address": ["Ann", "1 High St", "Bristol"], "text": "Hello"}), "letter-1"
        ),
        d.send(audience_message("google", "vip", "remove", {"email": ["ann@example.com"]}), "ads-1"),
    ]
    assert [r.status for r in results] == ["delivered"] * 5
    names = [e["event"] for e in _events(runtime)]
    assert names == [
        "Push Subscribed",
        "Push Sent",
        "Webhook Delivered",
        "Letter Sent",
        "Audience Member Removed",
    ]
    sent = next(e for e in _events(runtime) if e["event"] == "Push Sent")
    assert sent["properties"]["send_key"] == "push-1" and sent["properties"]["campaign"] == "c"


def test_a_failed_send_is_an_event_with_its_reason(runtime):
    d = service.dispatcher_for(runtime, service.open_channels(runtime, fake=True))
    gone = d.send(Message("push", "https://push.example.net/never", {"title": "Hi"}), "push-x")
    assert gone.status == "dead"
    (failed,) = [e for e in _events(runtime) if e["event"] == "Push Failed"]
    assert "no push subscription" in failed["properties"]["reason"]


def test_configured_channels_need_their_secrets(tmp_path, monkeypatch):
    plain = Runtime(Settings(home=str(tmp_path / "a")))
    try:
        assert set(service.open_channels(plain)) >= {"print", "ads"}
        assert "push" not in service.open_channels(plain) and "webhook" not in service.open_channels(plain)
    finally:
        plain.close()
    hooks = WebhookChannelSettings(enabled=True, url="https://hooks.example.invalid/x")
    runtime = Runtime(Settings(home=str(tmp_path / "b"), channels=ChannelsSettings(webhook=hooks)))
    try:
        monkeypatch.delenv("OMNIWEAVE_WEBHOOK_SECRET", raising=False)
        with pytest.raises(ConfigError, match="OMNIWEAVE_WEBHOOK_SECRET"):
            service.open_channels(runtime)
        monkeypatch.setenv("OMNIWEAVE_WEBHOOK_SECRET", "s3cret")
        assert service.open_channels(runtime)["webhook"].url == "https://hooks.example.invalid/x"  # type: ignore[attr-defined]
    finally:
        runtime.close()
