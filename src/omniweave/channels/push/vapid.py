"""VAPID (RFC 8292): the application server's key pair and the signed `Authorization` it sends.

The private key is a P-256 key. omniweave writes it as base64url of its 32 raw bytes (what
`omniweave push vapid-keys` prints and what most tools call the "private key"); PEM and base64url
DER are accepted too. The public key, base64url of the 65-byte uncompressed point, is the
`applicationServerKey` a page passes to `pushManager.subscribe()` (served at
`GET /v1/push/vapid-public-key`).

Each push request carries `Authorization: vapid t=<ES256 JWT>, k=<public key>`; the JWT's `aud` is
the push service's origin, `exp` at most 24 hours ahead, and `sub` a `mailto:` or `https:` contact.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid, VapidException

from omniweave.errors import ConfigError, InputError

JWT_LIFETIME = 12 * 3600
"""How long a VAPID JWT is valid (RFC 8292 allows at most 24 hours)."""


def b64url(data: bytes) -> str:
    """base64url without padding (how Web Push writes keys)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    """Bytes of a base64url text with or without padding; ValueError when it is not base64url."""
    cleaned = text.strip()
    try:
        return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64url: {exc}") from None


@dataclass(frozen=True)
class VapidKeys:
    """A VAPID key pair as text: put `private_key` in the environment, give `public_key` to browsers."""

    private_key: str
    public_key: str

    def to_dict(self) -> dict[str, str]:
        return {"private_key": self.private_key, "public_key": self.public_key}


def generate_vapid_keys() -> VapidKeys:
    """A new P-256 key pair for VAPID (private: base64url raw 32 bytes; public: base64url uncompressed point)."""
    key = ec.generate_private_key(ec.SECP256R1())
    raw = key.private_numbers().private_value.to_bytes(32, "big")
    return VapidKeys(b64url(raw), public_key_text(key.public_key()))


def public_key_text(key: ec.EllipticCurvePublicKey) -> str:
    """The base64url uncompressed point of a public key (the browser's `applicationServerKey`)."""
    return b64url(key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))


def load_vapid(private_key: str, where: str = "the VAPID private key") -> Vapid:
    """The VAPID signer for `private_key` (base64url raw or DER, or PEM); ConfigError naming `where` if unreadable."""
    text = (private_key or "").strip()
    if not text:
        raise ConfigError(f"{where} is empty; create a pair with `omniweave push vapid-keys`")
    try:
        if text.startswith("-----BEGIN"):
            return Vapid.from_pem(text.encode())
        return Vapid.from_string(text)
    except (VapidException, ValueError, TypeError, binascii.Error) as exc:
        raise ConfigError(
            f"{where} is not a P-256 private key (base64url raw 32 bytes, base64url DER or PEM): {exc}"
        ) from None


def audience(endpoint: str) -> str:
    """The JWT `aud` for a push endpoint: its origin (scheme, host and port)."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"a push endpoint must be an http(s) URL, got {endpoint[:80]!r}", field="to")
    return f"{parts.scheme}://{parts.netloc}"


def authorization(vapid: Vapid, endpoint: str, subject: str, now: float | None = None) -> str:
    """The `Authorization: vapid t=…, k=…` value for a request to `endpoint`, valid for JWT_LIFETIME."""
    at = time.time() if now is None else now
    claims = {"aud": audience(endpoint), "exp": int(at) + JWT_LIFETIME, "sub": subject}
    try:
        header: str = vapid.sign(claims)["Authorization"]
    except VapidException as exc:
        raise ConfigError(f"[channels.push] vapid_subject {subject!r} is not usable: {exc}") from None
    return header


def verified_claims(header: str | None, public_key: str | None = None) -> dict[str, Any] | None:
    """The JWT claims of a `vapid t=…, k=…` header when its ES256 signature verifies (and its `k` is
    `public_key`, when given); None otherwise. What a push service checks; tests and the fake use it."""
    if not header or not header.lower().startswith("vapid "):
        return None
    fields: dict[str, str] = {}
    for part in header[6:].split(","):
        name, _, value = part.strip().partition("=")
        fields[name.strip()] = value.strip()
    token, key = fields.get("t", ""), fields.get("k", "")
    if not token or not key or (public_key is not None and key != public_key):
        return None
    try:
        signer = Vapid.from_raw_public(key.encode())
        signed, _, signature = token.rpartition(".")
        if not signer.verify_token(signed.encode(), signature):
            return None
        claims: dict[str, Any] = orjson.loads(unb64url(signed.split(".")[1]))
    except (ValueError, IndexError, VapidException, orjson.JSONDecodeError):
        return None
    return claims
