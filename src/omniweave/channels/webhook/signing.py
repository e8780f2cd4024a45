"""Webhook signatures: HMAC-SHA256 over the timestamp and the raw body, with a replay window.

Every webhook omniweave sends carries

    Omniweave-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{raw body}")>
    Omniweave-Idempotency-Key: <the send's ledger key>

A receiver recomputes the HMAC over the exact bytes it received (before any JSON parsing) and
compares in constant time; it rejects a `t` more than `window` seconds away from its own clock, so
a captured request cannot be replayed later, and it drops a second delivery of an idempotency key
it has already processed (retries after a timeout carry the same key). Several `v1=` entries may
appear (while a secret is being rotated); one match is enough. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "Omniweave-Signature"
IDEMPOTENCY_HEADER = "Omniweave-Idempotency-Key"


def _digest(secret: str | bytes, timestamp: int, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The `Omniweave-Signature` value for `body` sent at `timestamp` (unix seconds)."""
    return f"t={int(timestamp)},v1={_digest(secret, int(timestamp), body)}"


def signature_problem(secret: str | bytes, header: str | None, body: bytes, now: float, window: float) -> str | None:
    """Why `header` does not authenticate `body` at time `now` (None when it does).

    The reasons name what was wrong (missing header, unreadable header, timestamp outside the
    replay window, no matching v1 signature) so a receiver can log them; it should still answer
    the sender with a plain 400/401 and not echo them.
    """
    if not header:
        return f"no {SIGNATURE_HEADER} header"
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            return f"unreadable {SIGNATURE_HEADER} part {part.strip()!r} (expected name=value)"
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return f"the timestamp t={value!r} is not unix seconds"
        elif name == "v1":
            candidates.append(value.strip().lower())
    if timestamp is None:
        return "the signature has no t= timestamp"
    if not candidates:
        return "the signature has no v1= entry"
    if abs(now - timestamp) > window:
        return f"the timestamp {timestamp} is outside the replay window of {window:g} s around {int(now)}"
    expected = _digest(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        return "no v1 signature matches the body (wrong secret, or the body was changed)"
    return None


def verify_signature(secret: str | bytes, header: str | None, body: bytes, now: float, window: float = 300) -> bool:
    """True when `header` is a valid `Omniweave-Signature` for the raw `body` within `window` seconds of `now`.

    What a receiver calls on every webhook before trusting it (see `signature_problem` for why not).
    """
    return signature_problem(secret, header, body, now, window) is None
