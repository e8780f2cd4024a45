"""A fake webhook receiver shipped in the package: an `httpx.MockTransport` that checks signatures.

`FakeWebhookReceiver(secret)` answers 200 to every correctly signed request (and 401 to a badly
signed one), or the statuses of `script` in turn; `received` keeps every request it accepted, with
its payload and idempotency key. `fake_webhook_channel(secret)` is a `WebhookChannel` wired to one,
for offline runs (`[channels.webhook] fake = …` is not a setting: tests and demos build it in code).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from omniweave.channels.webhook.adapter import WebhookChannel
from omniweave.channels.webhook.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, signature_problem


@dataclass(frozen=True)
class ReceivedWebhook:
    """One request the fake receiver accepted."""

    url: str
    payload: Any
    idempotency_key: str
    signature: str


class FakeWebhookReceiver:
    """Verifies each request like a real receiver; answers `script` statuses first, then 200."""

    def __init__(
        self,
        secret: str,
        script: Iterable[int | tuple[int, dict[str, str]]] = (),
        *,
        window: float = 300,
        clock: Callable[[], float] = time.time,
    ):
        self.secret = secret
        self.script = list(script)
        self.window = window
        self.clock = clock
        self.received: list[ReceivedWebhook] = []
        self.rejected: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        """The receiver's answer to one request."""
        body = request.read()
        header = request.headers.get(SIGNATURE_HEADER)
        problem = signature_problem(self.secret, header, body, self.clock(), self.window)
        if problem is not None:
            self.rejected.append(problem)
            return httpx.Response(401, text="bad signature")
        if self.script:
            answer = self.script.pop(0)
            status, headers = answer if isinstance(answer, tuple) else (answer, {})
            if status >= 300:
                return httpx.Response(status, headers=headers, text=f"scripted {status}")
        key = request.headers.get(IDEMPOTENCY_HEADER, "")
        if any(seen.idempotency_key == key for seen in self.received):
            return httpx.Response(200, text="duplicate ignored")
        self.received.append(ReceivedWebhook(str(request.url), orjson.loads(body), key, header or ""))
        return httpx.Response(200, headers={"x-request-id": f"fake-{len(self.received)}"}, text="ok")

    def transport(self) -> httpx.MockTransport:
        """This receiver as an httpx transport."""
        return httpx.MockTransport(self.handle)


def fake_webhook_channel(
    secret: str = "fake-webhook-secret", url: str = "https://hooks.example.invalid/omniweave", **receiver: Any
) -> tuple[WebhookChannel, FakeWebhookReceiver]:
    """A webhook channel that posts to an in-memory receiver (offline runs, tests above the port)."""
    fake = FakeWebhookReceiver(secret, **receiver)
    return WebhookChannel(secret, url=url, transport=fake.transport()), fake
