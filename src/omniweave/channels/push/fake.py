"""A fake push service and fake browsers, shipped in the package for offline runs and tests.

`FakeBrowser(endpoint)` makes a subscription the way a browser does (a P-256 key pair and a
16-byte auth secret) and can decrypt what is pushed to it (`decrypt(body)`, RFC 8291 with
http_ece). `FakePushService(public_key)` is an `httpx.MockTransport` handler that checks what a
real push service checks (a verifying VAPID header for its origin, `Content-Encoding: aes128gcm`,
a `TTL`), keeps what it accepted in `received`, answers 201, and 410 for endpoints in `gone`
(or the statuses of `script` first).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import http_ece
import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from omniweave.channels.push.vapid import b64url, public_key_text, verified_claims


class FakeBrowser:
    """A browser's side of one push subscription: its keys, and decryption of what arrives."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.auth_secret = os.urandom(16)

    def subscription(self) -> dict[str, Any]:
        """`PushSubscription.toJSON()`: {endpoint, keys: {p256dh, auth}}."""
        return {
            "endpoint": self.endpoint,
            "keys": {"p256dh": public_key_text(self.private_key.public_key()), "auth": b64url(self.auth_secret)},
        }

    def decrypt(self, body: bytes) -> bytes:
        """The plaintext of an aes128gcm push body sent to this subscription."""
        decrypted: bytes = http_ece.decrypt(
            body, private_key=self.private_key, auth_secret=self.auth_secret, version="aes128gcm"
        )
        return decrypted


@dataclass(frozen=True)
class PushReceived:
    """One push request the fake service accepted."""

    endpoint: str
    headers: dict[str, str]
    body: bytes
    claims: dict[str, Any] = field(default_factory=dict)


class FakePushService:
    """A push service in memory (see the module docstring); `handle` is its request handler."""

    def __init__(self, public_key: str | None = None, script: Iterable[int | tuple[int, dict[str, str]]] = ()):
        self.public_key = public_key
        self.script = list(script)
        self.gone: set[str] = set()
        self.received: list[PushReceived] = []
        self.refused: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Check and answer one push request."""
        endpoint = str(request.url)
        claims = verified_claims(request.headers.get("authorization"), self.public_key)
        origin = f"{request.url.scheme}://{request.url.netloc.decode()}"
        problem = None
        if claims is None:
            problem = "the VAPID authorization does not verify"
        elif claims.get("aud") != origin or int(claims.get("exp", 0)) < time.time():
            problem = f"the VAPID claims are not for {origin} or expired: {claims}"
        elif request.headers.get("content-encoding") != "aes128gcm":
            problem = "Content-Encoding must be aes128gcm"
        elif "ttl" not in request.headers:
            problem = "a TTL header is required"
        if problem is not None:
            self.refused.append(problem)
            return httpx.Response(401 if claims is None else 400, text=problem)
        if self.script:
            answer = self.script.pop(0)
            status, headers = answer if isinstance(answer, tuple) else (answer, {})
            return httpx.Response(status, headers=headers, text=f"scripted {status}")
        if endpoint in self.gone:
            return httpx.Response(410, text="push subscription has unsubscribed or expired")
        body = request.read()
        self.received.append(PushReceived(endpoint, dict(request.headers), body, claims or {}))
        return httpx.Response(201, headers={"location": f"{endpoint}/messages/{len(self.received)}"})

    def transport(self) -> httpx.MockTransport:
        """This service as an httpx transport."""
        return httpx.MockTransport(self.handle)
