"""Reading a collector request: the body within the size limit, decompressed, parsed; the write key.

SDKs send JSON as `application/json` or (analytics.js, to avoid a CORS preflight) `text/plain`,
optionally gzip-compressed. The content type is ignored: every body is parsed as JSON. The size
limit applies to the decompressed body, and decompression stops one byte past the limit, so a
small gzip bomb costs no more memory than an honest request of the maximum size.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import Receive

from omniweave.errors import AuthError, InputError

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_AUTO_WBITS = 32 + zlib.MAX_WBITS  # zlib or gzip header, detected


def _too_large(limit: int) -> InputError:
    return InputError(f"the request body is larger than the limit of {limit} bytes (after decompression)")


@dataclass
class RequestHeaders:
    """The few request headers the collector reads, found in one pass over the ASGI scope."""

    authorization: str | None = None
    content_encoding: str | None = None
    content_length: int | None = None
    origin: str | None = None
    forwarded_for: str | None = None


def scan_headers(raw_headers: Iterable[tuple[bytes, bytes]]) -> RequestHeaders:
    """Pick out the headers the collector needs (ASGI names are lower-case bytes)."""
    found = RequestHeaders()
    for name, value in raw_headers:
        if name == b"authorization":
            found.authorization = value.decode("latin-1")
        elif name == b"content-length":
            found.content_length = int(value) if value.isdigit() else None
        elif name == b"content-encoding":
            found.content_encoding = value.decode("latin-1")
        elif name == b"origin":
            found.origin = value.decode("latin-1")
        elif name == b"x-forwarded-for":
            found.forwarded_for = value.decode("latin-1")
    return found


async def read_body(receive: Receive, limit: int, declared_length: int | None) -> bytes:
    """The raw (possibly compressed) body, refusing to read more than `limit` bytes of it."""
    if declared_length is not None and declared_length > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def decompress(raw: bytes, encoding: str | None, limit: int) -> bytes:
    """The body decoded per `Content-Encoding` (gzip, deflate or none), at most `limit` bytes."""
    encoding = (encoding or "").strip().lower()
    if not encoding or encoding == "identity":
        return raw
    if encoding in ("gzip", "x-gzip"):
        decoder = zlib.decompressobj(_GZIP_WBITS)
    elif encoding == "deflate":
        decoder = zlib.decompressobj(_ZLIB_AUTO_WBITS)
    else:
        raise InputError(
            f"unsupported Content-Encoding {encoding!r}; expected gzip, deflate or none",
            field="Content-Encoding",
        )
    try:
        out = decoder.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise InputError(f"the body is not valid {encoding} data: {exc}", field="Content-Encoding") from None
    if len(out) > limit or decoder.unconsumed_tail:
        raise _too_large(limit)
    if not decoder.eof:
        raise InputError(f"the {encoding} body is truncated", field="Content-Encoding")
    return out


def parse_json(body: bytes) -> Any:
    """The body as JSON, or an InputError naming where parsing failed."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        reason = f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise InputError(reason) from None


def key_from_authorization(auth: str | None) -> str | None:
    """The write key from `Authorization` (Basic with the key as user name, or Bearer), if any."""
    if not auth:
        return None
    scheme, _, credentials = auth.strip().partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError("the Authorization header is not valid Basic credentials") from None
        user, _, password = decoded.partition(":")
        key = user or password  # the key is the user name; a few clients put it in the password
        if not key:
            raise AuthError("the Authorization header carries an empty write key")
        return key
    if scheme == "bearer" and credentials:
        return credentials
    raise AuthError(f"unsupported Authorization scheme {scheme!r}; use Basic (write key as user name) or Bearer")


def key_from_payload(payload: Any) -> str | None:
    """The `writeKey` field of a JSON body (analytics.js puts the key there), if any."""
    if isinstance(payload, dict):
        key = payload.get("writeKey")
        if key is None and isinstance(payload.get("batch"), list) and payload["batch"]:
            first = payload["batch"][0]
            key = first.get("writeKey") if isinstance(first, dict) else None
        if isinstance(key, str) and key:
            return key
    return None
