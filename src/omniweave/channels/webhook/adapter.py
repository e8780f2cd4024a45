"""The webhook adapter: a message's JSON payload POSTed to a URL, signed, with its idempotency key.

The URL is the message's `to` when it is an http(s) URL, else the configured
`[channels.webhook] url`. The body is `content["payload"]` as JSON (compact, UTF-8); the headers
are `Omniweave-Signature` (signing.py) and `Omniweave-Idempotency-Key`. The answer is read like
every HTTP provider's (`channels.port.http_outcome`): 2xx delivered, 429/5xx retried (honouring
`Retry-After`), 404/410 terminal and the URL suppressed, other 4xx terminal. A network failure or
timeout is transient: the receiver drops a second copy by its idempotency key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from omniweave.channels.http import PooledClient
from omniweave.channels.port import Message, Outcome, Transient, http_outcome
from omniweave.channels.webhook.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign
from omniweave.errors import ConfigError, InputError


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


class WebhookChannel:
    """Signed JSON webhooks over HTTP (`transport` may be a fake: `channels.webhook.fake`)."""

    name = "webhook"

    def __init__(
        self,
        secret: str,
        *,
        url: str = "",
        timeout: float = 15.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ):
        if not secret:
            raise ConfigError("a webhook channel needs a signing secret (set the variable named by secret_env)")
        self.secret = secret
        self.url = url
        self.clock = clock
        # the shipped fake is an httpx transport; a real endpoint goes through the lean pooled client
        self.client: httpx.Client | PooledClient = (
            httpx.Client(timeout=timeout, transport=transport)
            if transport is not None
            else PooledClient(timeout=timeout)
        )

    def target(self, message: Message) -> str:
        """Where `message` goes: its `to` when that is a URL, else the configured URL."""
        to = message.to.strip()
        url = to if _is_url(to) else self.url
        if not _is_url(url):
            raise InputError(
                f"a webhook needs an http(s) URL in `to` or in [channels.webhook] url; got to={to!r}", field="to"
            )
        return url

    def send(self, message: Message, idempotency_key: str) -> Outcome:
        """POST the signed payload once; the outcome of the receiver's answer (see the module docstring)."""
        payload: Any = message.content.get("payload")
        if payload is None:
            raise InputError("a webhook message needs content.payload (any JSON value)", field="content.payload")
        url = self.target(message)
        try:
            body = orjson.dumps(payload)
        except TypeError as exc:
            raise InputError(f"content.payload is not JSON: {exc}", field="content.payload") from None
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.secret, body, int(self.clock())),
            IDEMPOTENCY_HEADER: idempotency_key,
            "User-Agent": "omniweave-webhooks/1",
        }
        try:
            response = self.client.post(url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            return Transient(f"timeout: {type(exc).__name__}")
        except httpx.TransportError as exc:
            return Transient(f"network: {type(exc).__name__}: {exc}")
        provider_id = response.headers.get("x-request-id") or f"{response.status_code}:{idempotency_key}"
        return http_outcome(response.status_code, response.text, response.headers.get("retry-after"), provider_id)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()
