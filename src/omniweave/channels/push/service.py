"""Web push on a Runtime: the VAPID keys from the environment, subscriptions, and the wired channel.

- `subscribe` stores what a page's `pushManager.subscribe()` returned (endpoint and keys) for a
  userId or anonymousId and reports "Push Subscribed"; `unsubscribe` deletes it by endpoint.
- `open_push_channel` builds the adapter over the stored subscriptions; when a push service
  answers 404/410 the subscription is deleted and "Push Subscription Dropped" reported
  (`drop_subscription`), so no later send tries it again.
- `vapid_public_key` is what `GET /v1/push/vapid-public-key` serves to pages.

The private key comes only from the environment variable `[channels.push] vapid_private_key_env`
names (`omniweave push vapid-keys` makes a pair).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from omniweave.channels.feedback import SOURCE, event_for, event_name
from omniweave.channels.port import Message
from omniweave.channels.push.adapter import WebPushChannel
from omniweave.channels.push.fake import FakePushService
from omniweave.channels.push.vapid import audience, generate_vapid_keys, load_vapid, public_key_text, unb64url
from omniweave.collect.emit import emit
from omniweave.errors import ConfigError, InputError
from omniweave.runtime import Runtime
from omniweave.settings import PushChannelSettings
from omniweave.storage.ops.push import PushSubscription, PushSubscriptions

MAX_ENDPOINT = 2000
MAX_ID = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def vapid_private_key(settings: PushChannelSettings) -> str:
    """The VAPID private key from the variable the settings name; ConfigError naming it when unset."""
    value = os.environ.get(settings.vapid_private_key_env, "").strip()
    if not value:
        raise ConfigError(
            f"web push needs a VAPID private key in ${settings.vapid_private_key_env} "
            "([channels.push] vapid_private_key_env); make a pair with `omniweave push vapid-keys`"
        )
    return value


def vapid_public_key(runtime: Runtime) -> str:
    """The `applicationServerKey` pages subscribe with: the public half of the configured VAPID key."""
    push = runtime.settings.channels.push
    signer = load_vapid(vapid_private_key(push), f"${push.vapid_private_key_env}")
    return public_key_text(signer.public_key)


@dataclass(frozen=True)
class SubscribeRequest:
    """A browser's PushSubscription and whose it is (a userId, an anonymousId, or both)."""

    endpoint: str
    p256dh: str
    auth: str
    user_id: str | None = None
    anonymous_id: str | None = None
    person_id: str | None = None
    user_agent: str | None = None

    @staticmethod
    def from_json(body: Any) -> SubscribeRequest:
        """Read `{endpoint, keys: {p256dh, auth}, userId?, anonymousId?}`; InputError naming the field."""
        if not isinstance(body, dict):
            raise InputError("expected a JSON object {endpoint, keys: {p256dh, auth}, userId | anonymousId}")
        keys = body.get("keys")
        if not isinstance(keys, dict):
            raise InputError("expected keys: {p256dh, auth} as the browser's PushSubscription gives them", field="keys")

        def text(value: Any, field: str) -> str | None:
            if value is None:
                return None
            if not isinstance(value, str):
                raise InputError(f"must be a string, got {type(value).__name__}", field=field)
            return value

        return SubscribeRequest(
            endpoint=text(body.get("endpoint"), "endpoint") or "",
            p256dh=text(keys.get("p256dh"), "keys.p256dh") or "",
            auth=text(keys.get("auth"), "keys.auth") or "",
            user_id=text(body.get("userId"), "userId"),
            anonymous_id=text(body.get("anonymousId"), "anonymousId"),
            user_agent=text(body.get("userAgent"), "userAgent"),
        )

    def checked(self) -> SubscribeRequest:
        """This request if every field is usable; else an InputError naming the first bad field."""
        endpoint = self.endpoint.strip()
        if not endpoint or len(endpoint) > MAX_ENDPOINT or _CONTROL.search(endpoint):
            raise InputError(
                f"expected the subscription's endpoint URL (1 to {MAX_ENDPOINT} characters)", field="endpoint"
            )
        try:
            audience(endpoint)
        except InputError as exc:
            raise InputError(exc.reason, field="endpoint") from None
        for name, value, size in (("keys.p256dh", self.p256dh, 65), ("keys.auth", self.auth, 16)):
            try:
                raw = unb64url(value) if len(value) < 200 else b""
            except ValueError:
                raw = b""
            if len(raw) != size or (size == 65 and raw[0] != 4):
                what = "an uncompressed P-256 point" if size == 65 else "the 16-byte auth secret"
                raise InputError(f"expected base64url of {what} ({size} bytes), got {value[:40]!r}", field=name)
        user_id = (self.user_id or "").strip() or None
        anonymous_id = (self.anonymous_id or "").strip() or None
        if user_id is None and anonymous_id is None:
            raise InputError("a subscription needs a userId or an anonymousId (whose browser it is)", field="userId")
        for field_name, ident in (("userId", user_id), ("anonymousId", anonymous_id)):
            if ident is not None and (len(ident) > MAX_ID or _CONTROL.search(ident)):
                raise InputError(f"must be 1 to {MAX_ID} printable characters", field=field_name)
        agent = (self.user_agent or "")[:500] or None
        return SubscribeRequest(endpoint, self.p256dh, self.auth, user_id, anonymous_id, self.person_id, agent)


@dataclass(frozen=True)
class SubscriptionResult:
    """A stored subscription (its id is the SHA-256 of the endpoint) and whether it was new."""

    id: str
    new: bool
    user_id: str | None
    anonymous_id: str | None

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _event(name: str, sub: PushSubscription, at: float, reason: str | None = None) -> dict[str, Any]:
    """A push feedback event about `sub`, identified by the subscription's userId/anonymousId."""
    props: dict[str, Any] = {"endpoint_origin": audience(sub.endpoint), "subscription_id": sub.id}
    if reason is not None:
        props["reason"] = reason
    event = event_for(
        name,
        channel="push",
        address=sub.id,
        at=at,
        person_id=sub.person_id,
        properties=props,
        id_parts=(sub.id, repr(sub.created_at)),
    )
    if sub.user_id:
        event["userId"] = sub.user_id
    if sub.anonymous_id:
        event["anonymousId"] = sub.anonymous_id
    return event


def subscribe(runtime: Runtime, request: SubscribeRequest) -> SubscriptionResult:
    """Store (or refresh) a browser's subscription and report "Push Subscribed" when it is new."""
    checked = request.checked()
    sub, new = PushSubscriptions(runtime.store.engine).save(
        checked.endpoint,
        checked.p256dh,
        checked.auth,
        person_id=checked.person_id,
        user_id=checked.user_id,
        anonymous_id=checked.anonymous_id,
        user_agent=checked.user_agent,
    )
    if new:
        emit(runtime.store, SOURCE, [_event(event_name("push", "Subscribed"), sub, sub.created_at)])
    return SubscriptionResult(sub.id, new, sub.user_id, sub.anonymous_id)


def drop_subscription(runtime: Runtime, endpoint: str, reason: str, now: float | None = None) -> bool:
    """Delete the subscription of `endpoint` and report "Push Subscription Dropped"; False if there was none."""
    gone = PushSubscriptions(runtime.store.engine).remove(endpoint)
    if gone is None:
        return False
    at = time.time() if now is None else now
    emit(runtime.store, SOURCE, [_event(event_name("push", "Subscription Dropped"), gone, at, reason)])
    return True


def unsubscribe(runtime: Runtime, endpoint: str) -> bool:
    """The browser unsubscribed: drop its subscription (False when the endpoint is unknown)."""
    return drop_subscription(runtime, endpoint.strip(), "unsubscribed by the browser")


def open_push_channel(
    runtime: Runtime,
    *,
    transport: httpx.BaseTransport | None = None,
    clock: Callable[[], float] = time.time,
    fake: bool = False,
) -> WebPushChannel:
    """The web push channel of the runtime's settings over its stored subscriptions (ConfigError without a key).

    `fake`: the shipped fake push service instead of the network (and a throw-away key when none is set)."""
    push = runtime.settings.channels.push
    subscriptions = PushSubscriptions(runtime.store.engine)
    if fake:
        private = os.environ.get(push.vapid_private_key_env, "").strip() or generate_vapid_keys().private_key
        public = public_key_text(load_vapid(private).public_key)
        transport = FakePushService(public).transport()
    else:
        private = vapid_private_key(push)

    def lookup(endpoint: str) -> dict[str, Any] | None:
        found = subscriptions.get(endpoint)
        return found.info() if found is not None else None

    return WebPushChannel(
        private,
        push.vapid_subject,
        lookup,
        on_gone=lambda endpoint, reason: drop_subscription(runtime, endpoint, reason),
        timeout=push.timeout_seconds,
        transport=transport,
        clock=clock,
    )


def push_messages(
    runtime: Runtime,
    content: dict[str, Any],
    *,
    person_id: str | None = None,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    campaign: str | None = None,
    message_name: str | None = None,
    message_class: str = "promotional",
) -> list[Message]:
    """One push message per browser the person subscribed (found by person id, userId or anonymousId).

    What a journey sends: each message's `to` is one subscription's endpoint; key each send with
    the endpoint's id (`storage.ops.push.endpoint_id`) so a person with two browsers gets two.
    """
    subs = PushSubscriptions(runtime.store.engine).of(person_id=person_id, user_id=user_id, anonymous_id=anonymous_id)
    return [
        Message(
            "push",
            sub.endpoint,
            dict(content),
            person_id=person_id or sub.person_id,
            campaign=campaign,
            message_name=message_name,
            message_class=message_class,
        )
        for sub in subs
    ]
