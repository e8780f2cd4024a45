"""The webhook channel of a Runtime: the URL and timeout of `[channels.webhook]`, the secret from its variable."""

from __future__ import annotations

import os

from omniweave.channels.webhook.adapter import WebhookChannel
from omniweave.channels.webhook.fake import fake_webhook_channel
from omniweave.errors import ConfigError
from omniweave.runtime import Runtime


def open_webhook_channel(runtime: Runtime, *, fake: bool = False) -> WebhookChannel:
    """The signed-webhook channel (`fake`: posting to the shipped in-memory receiver instead)."""
    hooks = runtime.settings.channels.webhook
    secret = os.environ.get(hooks.secret_env, "")
    if fake:
        channel, _ = fake_webhook_channel(
            secret or "fake-webhook-secret", url=hooks.url or "https://hooks.example.invalid/"
        )
        return channel
    if not secret:
        raise ConfigError(
            f"[channels.webhook] is enabled but ${hooks.secret_env} (secret_env) is not set; put the signing secret there"
        )
    return WebhookChannel(secret, url=hooks.url, timeout=hooks.timeout_seconds)
