"""The REST API's dependencies, as `Annotated` aliases: the Runtime, and the one check of a secret key.

Routers write `runtime: RuntimeDep` and `dependencies=[SECRET_KEY]` (any key or session) or
`require(scope)` (privacy/roles.py; 403 without the scope), or `principal: PrincipalDep`; nothing else in
the API reads the Authorization header or the session cookie, or opens a store.
"""

from __future__ import annotations

import math
import threading
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyCookie, APIKeyHeader
from starlette.exceptions import HTTPException

from omniweave.collect.http.body import key_from_authorization
from omniweave.collect.http.limits import SharedRateLimiter
from omniweave.errors import AuthError
from omniweave.privacy import sessions
from omniweave.privacy.roles import Principal
from omniweave.privacy.service import access
from omniweave.runtime import Runtime
from omniweave.shells.api.errors import ApiError

_AUTHORIZATION = APIKeyHeader(
    name="Authorization",
    scheme_name="secretKey",
    description="A secret key from `omniweave keys secret`: `Bearer <key>`, or Basic with the key as user name.",
    auto_error=False,
)
_WRITE_KEY = "a write key only collects events; this route needs a secret key (`omniweave keys secret`) or a session"
_REFUSED = (
    "a secret key is required (Bearer, or Basic with the key as user name); create one with `omniweave keys secret`"
)


def get_runtime(request: Request) -> Runtime:
    """The Runtime the app was built with (create_app opens one for the life of the app)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def require_secret_key(runtime: RuntimeDep, authorization: Annotated[str | None, Security(_AUTHORIZATION)]) -> str:
    """The request's secret key, or a 401: a write key (a source's) does not open the REST API.

    A plain function: FastAPI runs it in a worker thread, since it asks the operational store."""
    try:
        key = key_from_authorization(authorization)
    except AuthError:
        key = None
    if key is None or not runtime.store.is_secret_key(key):
        raise ApiError(401, "Authorization", _REFUSED)
    return key


SecretKey = Annotated[str, Depends(require_secret_key)]


# --- principals: a secret key with scopes, or a dashboard session (privacy/roles.py) ---------------

_SESSION = APIKeyCookie(
    name=sessions.COOKIE_NAME,
    scheme_name="session",
    description="A dashboard session (POST /v1/auth/login); state-changing requests also need X-CSRF-Token.",
    auto_error=False,
)


def client_origin(request: Request) -> str:
    """Where a request came from, for the audit log: the client's IP (the first X-Forwarded-For hop)."""
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded:
        return forwarded.split(",", 1)[0].strip()
    return request.client.host if request.client else "unknown"


_LIMITER_LOCK = threading.Lock()


def _limiter(request: Request) -> SharedRateLimiter:
    """The app's token buckets (one per secret key or signed-in user), made on first use."""
    state = request.app.state
    limiter: SharedRateLimiter | None = getattr(state, "api_limiter", None)
    if limiter is None:
        with _LIMITER_LOCK:
            limiter = getattr(state, "api_limiter", None)
            if limiter is None:
                settings = request.app.state.settings
                limiter = SharedRateLimiter(settings.api_rate_limit_per_second, settings.api_rate_limit_burst)
                state.api_limiter = limiter
    return limiter


def check_rate(request: Request, principal: Principal) -> Principal:
    """`principal`, or a 429 with Retry-After once it is over `api_rate_limit_per_second` (docs/security.md).

    Checked after the credentials, so a stranger cannot spend a real key's requests by naming its prefix."""
    limiter = _limiter(request)
    wait = limiter.wait_time(principal.actor)
    if wait:
        seconds = str(max(1, math.ceil(wait)))
        reason = f"more than {limiter.rate:g} requests per second from {principal.actor}; retry after {seconds} s"
        raise HTTPException(429, reason, headers={"retry-after": seconds})
    return principal


def current_principal(
    request: Request,
    runtime: RuntimeDep,
    authorization: Annotated[str | None, Security(_AUTHORIZATION)],
    session: Annotated[str | None, Security(_SESSION)],
) -> Principal:
    """The key or user behind the request: 401 without valid credentials, 403 for a write key (it only
    collects events) or for a session's state-changing request without its CSRF token."""
    if authorization:
        try:
            key = key_from_authorization(authorization)
        except AuthError:
            key = None
        principal = access.principal_for_key(runtime, key) if key else None
        if principal is not None:
            return check_rate(request, principal)
        if key and access.is_write_key(runtime, key):
            raise ApiError(403, "Authorization", _WRITE_KEY)
        raise ApiError(401, "Authorization", _REFUSED)
    if session:
        principal = access.principal_for_session(runtime, session)
        if principal is None:
            raise ApiError(401, sessions.COOKIE_NAME, "the session has ended or is not valid; sign in again")
        if sessions.needs_csrf(request.method) and not sessions.csrf_ok(
            session, request.headers.get(sessions.CSRF_HEADER)
        ):
            raise ApiError(403, sessions.CSRF_HEADER, f"a signed-in change needs the {sessions.CSRF_HEADER} header")
        return check_rate(request, principal)
    raise ApiError(401, "Authorization", _REFUSED)


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require(scope: str) -> Any:
    """A dependency admitting principals with `scope` (403 otherwise); its value is the Principal."""

    def check(principal: PrincipalDep) -> Principal:
        if not principal.allows(scope):
            raise ApiError(403, "Authorization", f"{principal.actor} may not do this: it needs the scope {scope!r}")
        return principal

    return Depends(check)


SECRET_KEY = Depends(current_principal)
"""For `dependencies=[...]` of a router whose every route needs a secret key or a session (any scope)."""
