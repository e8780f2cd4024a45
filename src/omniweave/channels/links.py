"""Signed links: unsubscribe, click, open-pixel and QR tokens that nobody can forge or alter.

A token is `base64url(payload) + base64url(tag)`: the payload is compact JSON holding the purpose
(`u` unsubscribe, `c` click, `o` open, `q` QR, … one short word per use) and the caller's fields
(by convention `k` the send key, `ch` the channel, `a` the address, `t` the target URL); the tag is
HMAC-SHA256 over the purpose and the encoded payload, truncated to 16 bytes (128 bits: out of reach
of guessing, short enough for a URL). The token uses only URL-safe characters, no padding and no
dot, so it fits in a path segment (`/u/{token}`, `/o/{token}.gif`).

The key: the environment variable named by `[channels] signing_key_env` (at least 16 characters),
else 32 random bytes generated once and kept in `<home>/signing.key` (mode 0600), so links in mails
already sent keep working after a restart. Every module that prints a link (e-mail, SMS, QR codes,
letters) signs with `sign` and every endpoint that follows one checks it with `verify`.

    token = sign(runtime, "c", {"k": send_key, "t": "https://shop.example/sale"})
    verify(runtime, "c", token)  # -> {"k": …, "t": …}; None when forged, altered or malformed
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import orjson

from omniweave.errors import ConfigError, InputError
from omniweave.settings import Settings

TAG_BYTES = 16
TAG_CHARS = 22  # base64url of 16 bytes without padding
KEY_FILE = "signing.key"
MIN_ENV_KEY_CHARS = 16
MAX_TOKEN_CHARS = 4096


class _HasSettings(Protocol):
    settings: Settings


KeySource = _HasSettings | Settings | bytes


def signing_key(source: KeySource) -> bytes:
    """The key that signs links for these settings (a Runtime, Settings, or the key itself).

    From the variable named by `settings.channels.signing_key_env` when set (ConfigError when it is
    shorter than 16 characters), else from `<home>/signing.key`, created on first use.
    """
    if isinstance(source, bytes):
        if not source:
            raise ConfigError("the link signing key is empty")
        return source
    settings = source if isinstance(source, Settings) else source.settings
    name = settings.channels.signing_key_env
    from_env = os.environ.get(name, "")
    if from_env:
        if len(from_env) < MIN_ENV_KEY_CHARS:
            raise ConfigError(
                f"the link signing key in ${name} has {len(from_env)} characters; "
                f"at least {MIN_ENV_KEY_CHARS} are needed (unset it to use a generated key)"
            )
        return from_env.encode()
    return _key_file(str(Path(settings.home).resolve() / KEY_FILE))


@lru_cache(maxsize=16)
def _key_file(path: str) -> bytes:
    """The key kept at `path` (hex), generated there with mode 0600 when absent."""
    file = Path(path)
    if not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32) + "\n")
    text = file.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(
            f"{path}: expected the link signing key as hex; delete the file to generate a new one"
        ) from None
    if len(key) < 16:
        raise ConfigError(f"{path}: the link signing key is {len(key)} bytes; expected 32 (delete it to regenerate)")
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tag(key: bytes, purpose: str, body: str) -> bytes:
    return hmac.new(key, f"{purpose}\x1f{body}".encode(), hashlib.sha256).digest()[:TAG_BYTES]


def sign(source: KeySource, purpose: str, payload: dict[str, Any]) -> str:
    """A URL-safe token carrying `payload` for `purpose`, signed with the key of `source`.

    `purpose` is a short word (`u`, `c`, `o`, `q`, …): a token made for one purpose never verifies
    for another, so a click link cannot be replayed as an unsubscribe.
    """
    if not purpose or not purpose.isalnum():
        raise InputError(f"a link purpose must be a short alphanumeric word, got {purpose!r}", field="purpose")
    if "p" in payload:
        raise InputError("the payload key 'p' is reserved for the purpose", field="payload")
    body = _b64(orjson.dumps({"p": purpose, **payload}))
    return body + _b64(_tag(signing_key(source), purpose, body))


def verify(source: KeySource, purpose: str, token: str) -> dict[str, Any] | None:
    """The payload of `token` (without the purpose) when it was signed for `purpose` with this key;
    None for a forged, altered, truncated or malformed token — never an exception."""
    if not isinstance(token, str) or not TAG_CHARS < len(token) <= MAX_TOKEN_CHARS:
        return None
    body, tag = token[:-TAG_CHARS], token[-TAG_CHARS:]
    try:
        given = _unb64(tag)
        expected = _tag(signing_key(source), purpose, body)
        if not hmac.compare_digest(given, expected):
            return None
        data = orjson.loads(_unb64(body))
    except (binascii.Error, ValueError, UnicodeError):
        return None
    if not isinstance(data, dict) or data.pop("p", None) != purpose:
        return None
    return data
