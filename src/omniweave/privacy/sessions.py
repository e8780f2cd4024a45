"""Dashboard sessions: tokens, their cookie, and CSRF protection. Pure.

A session token is 32 random bytes (URL-safe base64) in a cookie that is `HttpOnly` (no script reads it),
`Secure` (sent over HTTPS only; `secure=False` is for http://localhost development), `SameSite=Lax` (not
sent on cross-site POSTs) and `Path=/`. The store keeps only the token's SHA-256, so a copy of the
database opens no session.

CSRF: every state-changing request of a session (POST, PUT, PATCH, DELETE) must carry the header
`X-CSRF-Token` with the session's CSRF token (synchroniser-token pattern). The CSRF token is an HMAC of the
session token, so the server stores nothing more, and only a page that was given it (the dashboard puts
it in a `<meta>` tag) can send it; a forged cross-site request cannot read it. A request authenticated by
a secret key (an Authorization header, which browsers never add on their own) needs no CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

COOKIE_NAME = "omniweave_session"
CSRF_HEADER = "X-CSRF-Token"
DEFAULT_LIFETIME_SECONDS = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def new_token() -> str:
    """A fresh session token (256 random bits)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the store keeps of a session token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session: derived from the session token, unguessable without it."""
    return hmac.new(session_token.encode("utf-8"), b"omniweave-csrf", hashlib.sha256).hexdigest()


def csrf_ok(session_token: str, presented: str | None) -> bool:
    """Whether `presented` is the session's CSRF token (in constant time)."""
    return presented is not None and hmac.compare_digest(csrf_token(session_token), presented)


def needs_csrf(method: str) -> bool:
    """Whether a request with this method changes state and so needs the CSRF token."""
    return method.upper() not in SAFE_METHODS


def cookie_header(token: str, max_age: int = DEFAULT_LIFETIME_SECONDS, *, secure: bool = True) -> str:
    """The `Set-Cookie` value that starts a session."""
    attributes = [f"{COOKIE_NAME}={token}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Lax"]
    if secure:
        attributes.append("Secure")
    return "; ".join(attributes)


def clearing_cookie_header(*, secure: bool = True) -> str:
    """The `Set-Cookie` value that ends a session in the browser."""
    return cookie_header("", 0, secure=secure)
