"""The web push adapter: a notification encrypted for one browser subscription, sent with VAPID.

A push message's `to` is the subscription's endpoint; its content is `title` (required), `body`,
`url` (opened on click) and `icon`, sent as a JSON payload that the page's service worker shows.
The payload is encrypted for the subscription's keys (RFC 8291, `Content-Encoding: aes128gcm`,
by pywebpush) and POSTed to the endpoint with `Authorization: vapid …` (vapid.py), `TTL` (how long
the push service keeps it for an offline browser) and `Urgency`.

Answers: 201 (any 2xx) delivered; 404/410 the subscription is gone: terminal with suppression,
and `on_gone(endpoint, reason)` deletes it and reports "Push Subscription Dropped"; 429/5xx
retried (honouring `Retry-After`); other 4xx terminal (413: the payload is too large).
"""

from __future__ import annotations

import binascii
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import orjson
from pywebpush import WebPusher, WebPushException

from omniweave.channels.http import PooledClient
from omniweave.channels.port import Message, Outcome, Terminal, Transient, http_outcome
from omniweave.channels.push.vapid import authorization, load_vapid
from omniweave.errors import InputError

MAX_PAYLOAD = 3993
"""The largest plaintext that fits the 4,096 bytes push services accept once encrypted (aes128gcm)."""

PAYLOAD_KEYS = ("title", "body", "url", "icon")

SubscriptionLookup = Callable[[str], Mapping[str, Any] | None]
"""Endpoint -> the browser's PushSubscription JSON ({endpoint, keys: {p256dh, auth}}), or None when unknown."""


def push_payload(message: Message) -> bytes:
    """The JSON the service worker receives: title, body, url, icon (those given); InputError when unfit."""
    payload = {key: message.text(key) for key in PAYLOAD_KEYS if message.content.get(key) not in (None, "")}
    if not payload.get("title"):
        raise InputError("a push message needs content.title", field="content.title")
    data = orjson.dumps(payload)
    if len(data) > MAX_PAYLOAD:
        raise InputError(
            f"the push payload is {len(data)} bytes; push services take at most {MAX_PAYLOAD} before encryption",
            field="content",
        )
    return data


class WebPushChannel:
    """Web push with VAPID to the subscriptions `subscriptions` finds (`transport` may be a fake)."""

    name = "push"

    def __init__(
        self,
        vapid_private_key: str,
        subject: str,
        subscriptions: SubscriptionLookup,
        *,
        on_gone: Callable[[str, str], object] | None = None,
        ttl: int = 24 * 3600,
        timeout: float = 15.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.vapid = load_vapid(vapid_private_key)
        self.subject = subject
        self.subscriptions = subscriptions
        self.on_gone = on_gone
        self.ttl = ttl
        self.clock = clock
        # the shipped fake is an httpx transport; a real endpoint goes through the lean pooled client
        self.client: httpx.Client | PooledClient = (
            httpx.Client(timeout=timeout, transport=transport)
            if transport is not None
            else PooledClient(timeout=timeout)
        )
        self._auth: dict[str, tuple[float, str]] = {}

    def _authorization(self, endpoint: str) -> str:
        """A VAPID header for the endpoint's origin, reused for an hour (signing each request costs CPU)."""
        origin = endpoint.split("/", 3)[:3]
        key = "/".join(origin)
        now = self.clock()
        cached = self._auth.get(key)
        if cached is None or now - cached[0] > 3600:
            cached = (now, authorization(self.vapid, endpoint, self.subject, now))
            self._auth[key] = cached
        return cached[1]

    def send(self, message: Message, idempotency_key: str) -> Outcome:
        """Encrypt and POST the notification once; see the module docstring for the outcomes."""
        data = push_payload(message)
        endpoint = message.to.strip()
        headers = {
            "Authorization": self._authorization(endpoint),
            "TTL": str(int(message.content.get("ttl") or self.ttl)),
            "Urgency": "high" if message.message_class == "transactional" else "normal",
            "Content-Type": "application/octet-stream",
            "Content-Encoding": "aes128gcm",
        }
        subscription = self.subscriptions(endpoint)
        if subscription is None:
            return Terminal("no push subscription has this endpoint (unsubscribed or dropped)", suppress=True)
        try:
            body = WebPusher(subscription).encode(data, "aes128gcm")["body"]
        except (WebPushException, ValueError, TypeError, binascii.Error) as exc:
            return self._gone(endpoint, Terminal(f"the subscription's keys are unusable: {exc}", suppress=True))
        try:
            response = self.client.post(endpoint, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            return Transient(f"timeout: {type(exc).__name__}")
        except httpx.TransportError as exc:
            return Transient(f"network: {type(exc).__name__}: {exc}")
        provider_id = response.headers.get("location") or f"{response.status_code}:{idempotency_key}"
        outcome = http_outcome(response.status_code, response.text, response.headers.get("retry-after"), provider_id)
        if response.status_code in (404, 410):
            return self._gone(endpoint, outcome)
        return outcome

    def _gone(self, endpoint: str, outcome: Outcome) -> Outcome:
        if self.on_gone is not None and isinstance(outcome, Terminal):
            self.on_gone(endpoint, outcome.reason)
        return outcome

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()
