"""Sessions, users, secret keys, sources and the audit log (privacy/service/access.py, audit.py).

    POST /v1/auth/login          e-mail and password → a session cookie and the page's CSRF token
    POST /v1/auth/logout         ends the session
    GET  /v1/auth/me             who the credentials belong to, with their scopes
    GET|POST /v1/users           list / create dashboard users              (users:manage: owners)
    PUT  /v1/users/{ref}/role    change a user's role                        (users:manage)
    POST /v1/users/{ref}/disable disable a user and end their sessions       (users:manage)
    GET|POST /v1/keys            list / create secret keys with scopes       (config:manage)
    DELETE /v1/keys/{prefix}     revoke a secret key                         (config:manage)
    POST /v1/sources/{name}/disable|enable   the collector answers 404 to a disabled source's write key
    GET  /v1/audit               the audit log, newest first                 (privacy:admin)

Every change is recorded in the audit log with the principal and the client's address.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from omniweave.privacy import roles, sessions
from omniweave.privacy.roles import Principal
from omniweave.privacy.service import access, audit
from omniweave.shells.api.deps import PrincipalDep, RuntimeDep, client_origin, require
from omniweave.shells.api.errors import ApiError
from omniweave.shells.api.schemas import ErrorBody

router = APIRouter(
    tags=["access"],
    responses={400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
)

UsersAdmin = Annotated[Principal, require(roles.USERS_MANAGE)]
ConfigAdmin = Annotated[Principal, require(roles.CONFIG_MANAGE)]
PrivacyAdmin = Annotated[Principal, require(roles.PRIVACY_ADMIN)]


class Login(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=256)


class UserCreate(BaseModel):
    email: str = Field(max_length=320)
    name: str = Field(max_length=200)
    role: str = Field(description=", ".join(roles.ROLES))
    password: str = Field(max_length=256, description="12 to 256 characters")


class UserPublic(BaseModel):
    id: str
    email: str
    name: str
    role: str
    created_at: float
    disabled_at: float | None


class RoleChange(BaseModel):
    role: str = Field(description=", ".join(roles.ROLES))


class SessionPublic(BaseModel):
    user: UserPublic
    csrf_token: str = Field(description=f"send it as {sessions.CSRF_HEADER} with every change made in the session")
    expires_at: float


class PrincipalPublic(BaseModel):
    kind: str
    name: str
    role: str | None
    scopes: list[str]


class KeyCreate(BaseModel):
    name: str = Field(max_length=200)
    scopes: list[str] = Field(description=", ".join(roles.KEY_SCOPES))


class KeyCreated(BaseModel):
    key: str = Field(description="shown this once; the store keeps only its hash")
    prefix: str
    name: str
    scopes: list[str]


class KeyPublic(BaseModel):
    prefix: str
    name: str
    created_at: float
    scopes: list[str]


class AuditEntryPublic(BaseModel):
    seq: int
    at: str
    actor: str
    action: str
    target: str
    origin: str
    detail: dict[str, Any]


class AuditPagePublic(BaseModel):
    entries: list[AuditEntryPublic]
    more: bool = Field(description="older entries exist: ask again with before=<the last seq>")


def _secure(request: Request) -> bool:
    """Whether the session cookie gets `Secure`: over HTTPS (also behind a proxy that says so)."""
    return request.headers.get("x-forwarded-proto", request.url.scheme) == "https"


def _not_found(exc: access.NotFound) -> ApiError:
    return ApiError(404, exc.field, str(exc))


@router.post(
    "/v1/auth/login",
    response_model=SessionPublic,
    summary="Sign in (starts a session)",
    responses={429: {"model": ErrorBody, "description": "too many failed sign-ins: wait Retry-After seconds"}},
)
def login(runtime: RuntimeDep, request: Request, response: Response, body: Login) -> dict[str, Any]:
    """Check the password (argon2) and set the session cookie (HttpOnly, SameSite=Lax, Secure over HTTPS);
    the answer carries the CSRF token that every change made in the session must send back."""
    try:
        started = access.login(runtime, body.email, body.password, origin=client_origin(request))
    except access.LockedOut as exc:
        seconds = str(max(1, math.ceil(exc.retry_after)))
        raise HTTPException(429, str(exc), headers={"retry-after": seconds}) from None
    except access.LoginRefused as exc:
        raise ApiError(401, "password", str(exc)) from None
    response.headers["set-cookie"] = sessions.cookie_header(started.token, secure=_secure(request))
    return started.to_dict()


@router.post("/v1/auth/logout", status_code=200, summary="Sign out (ends the session)")
def logout(runtime: RuntimeDep, request: Request, response: Response, principal: PrincipalDep) -> dict[str, bool]:
    token = request.cookies.get(sessions.COOKIE_NAME)
    if token:
        access.logout(runtime, token, origin=client_origin(request))
    response.headers["set-cookie"] = sessions.clearing_cookie_header(secure=_secure(request))
    return {"success": True}


@router.get("/v1/auth/me", response_model=PrincipalPublic, summary="Who the credentials belong to")
def me(principal: PrincipalDep) -> dict[str, object]:
    return principal.to_dict()


@router.get("/v1/users", response_model=list[UserPublic], summary="Dashboard users")
def users(runtime: RuntimeDep, _: UsersAdmin) -> list[dict[str, object]]:
    return [user.to_dict() for user in access.list_users(runtime)]


@router.post("/v1/users", response_model=UserPublic, summary="Create a dashboard user")
def create_user(runtime: RuntimeDep, request: Request, body: UserCreate, principal: UsersAdmin) -> dict[str, object]:
    user = access.create_user(
        runtime, body.email, body.name, body.role, body.password, actor=principal.actor, origin=client_origin(request)
    )
    return user.to_dict()


@router.put(
    "/v1/users/{ref}/role", response_model=UserPublic, responses={404: {"model": ErrorBody}}, summary="Change a role"
)
def set_role(runtime: RuntimeDep, request: Request, ref: str, body: RoleChange, principal: UsersAdmin) -> Any:
    try:
        return access.set_role(runtime, ref, body.role, actor=principal.actor, origin=client_origin(request)).to_dict()
    except access.NotFound as exc:
        raise _not_found(exc) from None


@router.post(
    "/v1/users/{ref}/disable",
    response_model=UserPublic,
    responses={404: {"model": ErrorBody}},
    summary="Disable a user",
)
def disable_user(runtime: RuntimeDep, request: Request, ref: str, principal: UsersAdmin) -> Any:
    try:
        return access.disable_user(runtime, ref, actor=principal.actor, origin=client_origin(request)).to_dict()
    except access.NotFound as exc:
        raise _not_found(exc) from None


@router.get("/v1/keys", response_model=list[KeyPublic], summary="Secret keys and their scopes")
def keys(runtime: RuntimeDep, _: ConfigAdmin) -> list[dict[str, object]]:
    return [key.to_dict() for key in access.list_api_keys(runtime)]


@router.post("/v1/keys", response_model=KeyCreated, summary="Create a secret key with scopes")
def create_key(runtime: RuntimeDep, request: Request, body: KeyCreate, principal: ConfigAdmin) -> dict[str, object]:
    made = access.create_api_key(runtime, body.name, body.scopes, actor=principal.actor, origin=client_origin(request))
    return made.to_dict()


@router.delete(
    "/v1/keys/{prefix}", status_code=200, responses={404: {"model": ErrorBody}}, summary="Revoke a secret key"
)
def revoke_key(runtime: RuntimeDep, request: Request, prefix: str, principal: ConfigAdmin) -> dict[str, bool]:
    try:
        access.revoke_api_key(runtime, prefix, actor=principal.actor, origin=client_origin(request))
    except access.NotFound as exc:
        raise _not_found(exc) from None
    return {"success": True}


@router.post(
    "/v1/sources/{name}/{state}",
    status_code=200,
    responses={404: {"model": ErrorBody}},
    summary="Disable or enable a source",
)
def source_state(
    runtime: RuntimeDep, request: Request, name: str, state: roles.SourceState, principal: ConfigAdmin
) -> dict[str, bool]:
    """`disable`: the collector answers the source's write key with 404 (within a few seconds); `enable`."""
    try:
        access.set_source_enabled(
            runtime, name, state == "enable", actor=principal.actor, origin=client_origin(request)
        )
    except access.NotFound as exc:
        raise _not_found(exc) from None
    return {"success": True}


@router.get("/v1/audit", response_model=AuditPagePublic, summary="The audit log, newest first")
def audit_log(
    runtime: RuntimeDep,
    _: PrivacyAdmin,
    action: Annotated[str | None, Query(max_length=60, description="an action, or a prefix such as key.")] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[float | None, Query(ge=0, le=1e11, description="epoch seconds")] = None,
    before: Annotated[int | None, Query(ge=1, le=2**62, description="entries before this seq")] = None,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = 100,
) -> dict[str, Any]:
    return audit.entries(runtime, action=action, actor=actor, since=since, before_seq=before, limit=limit).to_dict()
