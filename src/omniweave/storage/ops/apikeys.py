"""Secret API keys: their format, their hash, and how a presented key is looked up. Pure.

A secret key is `sk_<prefix>_<secret>`: `prefix` is 12 hex characters that name the key without
revealing it (the store looks a key up by it, and lists keys by it), `secret` is 32 random bytes
in URL-safe base64. The store keeps only the prefix and the SHA-256 of the whole key: a key with
256 random bits cannot be guessed from its hash, so a slow password hash (argon2) would only
slow every API request down without making a stolen database any less useless.

Keys made before migrations (`sk_<43 characters>`, stored in plain) were hashed in place by
migration 0002; their prefix is the first 16 hex digits of their hash, so they keep working.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

PREFIX_HEX = 12  # 48 bits: unique enough to look up by, nothing of the secret
LEGACY_PREFIX_HEX = 16  # keys from before 0002: prefix taken from the hash (never the same length as a new one)
_NEW_KEY = re.compile(rf"sk_([0-9a-f]{{{PREFIX_HEX}}})_[A-Za-z0-9_-]{{43}}")
_LEGACY_KEY = re.compile(r"sk_[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class NewSecretKey:
    """A key just made: `key` is shown once to whoever asked for it; the rest is what is stored."""

    key: str = field(repr=False)  # never in logs or tracebacks
    prefix: str
    key_hash: str


def hash_key(key: str) -> str:
    """The SHA-256 (hex) of a whole key: what the store keeps instead of the key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_secret_key() -> NewSecretKey:
    """A fresh random key with its lookup prefix and hash."""
    prefix = secrets.token_hex(PREFIX_HEX // 2)
    key = f"sk_{prefix}_{secrets.token_urlsafe(32)}"
    return NewSecretKey(key=key, prefix=prefix, key_hash=hash_key(key))


def lookup_prefix(key: object) -> str | None:
    """The prefix to look `key` up by, or None when `key` is not a secret key at all (wrong type,
    length or characters), which needs no look-up."""
    if not isinstance(key, str):
        return None
    match = _NEW_KEY.fullmatch(key)
    if match:
        return match.group(1)
    if _LEGACY_KEY.fullmatch(key):
        return hash_key(key)[:LEGACY_PREFIX_HEX]
    return None


def matches(key: str, key_hash: str) -> bool:
    """Whether `key` is the key whose hash is `key_hash` (in constant time)."""
    return hmac.compare_digest(hash_key(key), key_hash)
