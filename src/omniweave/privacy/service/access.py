"""Keys, users and sessions: creating and changing them (each change recorded in the audit log), and
finding the principal behind a request's credentials (shells/api/deps.py calls `principal_for_key` and
`principal_for_session`).

Secret keys themselves are made by the store (storage/ops/apikeys.py: only a prefix and a hash are kept);
this module adds their scopes (`api_key_scopes`). Users' passwords are argon2 hashes (privacy/users.py);
sessions are kept as token hashes (privacy/sessions.py).
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from dataclasses import dataclass, field

import sqlalchemy as sa

from omniweave.errors import InputError
from omniweave.privacy import roles, sessions, users
from omniweave.privacy.roles import Principal
from omniweave.privacy.service.audit import record
from omniweave.privacy.users import User
from omniweave.runtime import Runtime
from omniweave.storage.ops import apikeys
from omniweave.storage.ops.tables.access import api_key_scopes, audit_log, disabled_sources
from omniweave.storage.ops.tables.access import sessions as session_rows
from omniweave.storage.ops.tables.access import users as user_rows
from omniweave.storage.ops.tables.keys import secret_keys, sources


class NotFound(InputError):
    """The key, user or source named does not exist."""


# --- secret keys --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewKey:
    """A key just made: `key` is shown once; the store keeps its prefix, hash and scopes."""

    key: str = field(repr=False)
    prefix: str
    name: str
    scopes: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"key": self.key, "prefix": self.prefix, "name": self.name, "scopes": list(self.scopes)}


@dataclass(frozen=True)
class KeyInfo:
    prefix: str
    name: str
    created_at: float
    scopes: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"prefix": self.prefix, "name": self.name, "created_at": self.created_at, "scopes": list(self.scopes)}


def create_api_key(runtime: Runtime, name: str, scopes: object, *, actor: str, origin: str | None = None) -> NewKey:
    """A new secret key with `scopes` (privacy/roles.py KEY_SCOPES); recorded as `key.create`."""
    chosen = roles.check_scopes(scopes)
    if not isinstance(name, str) or not name.strip():
        raise InputError("expected a name saying who the key is for", field="name")
    key = runtime.store.create_secret_key(name.strip())
    prefix = apikeys.lookup_prefix(key)
    assert prefix is not None
    with runtime.store.engine.begin() as conn:
        conn.execute(api_key_scopes.insert(), [{"prefix": prefix, "scope": scope} for scope in chosen])
    record(runtime, actor, "key.create", f"key:{prefix}", {"name": name.strip(), "scopes": list(chosen)}, origin)
    return NewKey(key, prefix, name.strip(), chosen)


def list_api_keys(runtime: Runtime) -> list[KeyInfo]:
    """Every secret key with its scopes (a key without recorded scopes has them all)."""
    with runtime.store.engine.connect() as conn:
        scoped: dict[str, list[str]] = {}
        for prefix, scope in conn.execute(sa.select(api_key_scopes.c.prefix, api_key_scopes.c.scope)):
            scoped.setdefault(prefix, []).append(scope)
    return [
        KeyInfo(info.prefix, info.name, info.created_at, tuple(sorted(scoped.get(info.prefix, roles.KEY_SCOPES))))
        for info in runtime.store.list_secret_keys()
    ]


def revoke_api_key(runtime: Runtime, prefix: str, *, actor: str, origin: str | None = None) -> None:
    """Revoke a secret key (the API refuses it from then on); recorded as `key.revoke`."""
    if not runtime.store.revoke_secret_key(prefix):
        raise NotFound(f"no secret key with prefix {prefix!r}", field="prefix")
    with runtime.store.engine.begin() as conn:
        conn.execute(api_key_scopes.delete().where(api_key_scopes.c.prefix == prefix))
    record(runtime, actor, "key.revoke", f"key:{prefix}", {}, origin)


def principal_for_key(runtime: Runtime, key: object) -> Principal | None:
    """The principal of a valid secret key, None for anything else."""
    prefix = apikeys.lookup_prefix(key)
    if prefix is None:
        return None
    with runtime.store.engine.connect() as conn:
        row = conn.execute(
            sa.select(secret_keys.c.key_hash, secret_keys.c.name).where(secret_keys.c.prefix == prefix)
        ).first()
        if row is None or not apikeys.matches(str(key), row[0]):
            return None
        scopes = conn.execute(sa.select(api_key_scopes.c.scope).where(api_key_scopes.c.prefix == prefix)).scalars()
        return roles.key_principal(prefix, str(row[1]), frozenset(scopes))


def is_write_key(runtime: Runtime, key: object) -> bool:
    """Whether `key` is a source's write key (which only collects events)."""
    return isinstance(key, str) and runtime.store.source_for_write_key(key) is not None


# --- sources --------------------------------------------------------------------------------------


def _source_id(runtime: Runtime, name: str) -> str:
    with runtime.store.engine.connect() as conn:
        found = conn.execute(sa.select(sources.c.id).where(sources.c.name == name)).scalar()
    if found is None:
        raise NotFound(f"no source named {name!r} (see `omniweave keys list`)", field="source")
    return str(found)


def set_source_enabled(runtime: Runtime, name: str, enabled: bool, *, actor: str, origin: str | None = None) -> None:
    """Disable a source (the collector answers its write key with 404, within seconds) or enable it again;
    recorded as `source.disable` / `source.enable`."""
    source_id = _source_id(runtime, name)
    with runtime.store.engine.begin() as conn:
        conn.execute(disabled_sources.delete().where(disabled_sources.c.source_id == source_id))
        if not enabled:
            conn.execute(
                disabled_sources.insert().values(source_id=source_id, disabled_at=time.time(), disabled_by=actor)
            )
    action = "source.enable" if enabled else "source.disable"
    record(runtime, actor, action, f"source:{source_id}", {"name": name}, origin)


# --- users ----------------------------------------------------------------------------------------


def _user(row: sa.Row[tuple[object, ...]]) -> User:
    m = row._mapping
    return User(str(m["id"]), str(m["email"]), str(m["name"]), str(m["role"]), float(m["created_at"]), m["disabled_at"])


def create_user(
    runtime: Runtime,
    email: object,
    name: object,
    role: object,
    password: object,
    *,
    actor: str,
    origin: str | None = None,
) -> User:
    """A new dashboard user; recorded as `user.create` (the password is never recorded anywhere)."""
    address, display, chosen, secret = users.check_new_user(email, name, role, password)
    user = User(uuid.uuid4().hex, address, display, chosen, time.time())
    try:
        with runtime.store.engine.begin() as conn:
            conn.execute(
                user_rows.insert().values(
                    id=user.id,
                    email=address,
                    name=display,
                    role=chosen,
                    password_hash=users.hash_password(secret),
                    created_at=user.created_at,
                )
            )
    except sa.exc.IntegrityError:
        raise InputError(f"a user with the e-mail address {address!r} already exists", field="email") from None
    record(runtime, actor, "user.create", f"user:{user.id}", {"role": chosen}, origin)
    return user


def find_user(runtime: Runtime, ref: str) -> User:
    """A user by id or e-mail address."""
    with runtime.store.engine.connect() as conn:
        row = conn.execute(
            sa.select(user_rows).where(sa.or_(user_rows.c.id == ref, user_rows.c.email == ref.strip().lower()))
        ).first()
    if row is None:
        raise NotFound(f"no user with the id or e-mail {ref!r}", field="user")
    return _user(row)


def list_users(runtime: Runtime) -> list[User]:
    with runtime.store.engine.connect() as conn:
        return [_user(row) for row in conn.execute(sa.select(user_rows).order_by(user_rows.c.created_at))]


def set_role(runtime: Runtime, ref: str, role: object, *, actor: str, origin: str | None = None) -> User:
    """Give a user another role; recorded as `user.role` with the old and the new role."""
    user = find_user(runtime, ref)
    chosen = roles.check_role(role)
    with runtime.store.engine.begin() as conn:
        conn.execute(user_rows.update().where(user_rows.c.id == user.id).values(role=chosen))
    record(runtime, actor, "user.role", f"user:{user.id}", {"from": user.role, "to": chosen}, origin)
    return find_user(runtime, user.id)


def disable_user(runtime: Runtime, ref: str, *, actor: str, origin: str | None = None) -> User:
    """Disable a user and end their sessions; recorded as `user.disable`."""
    user = find_user(runtime, ref)
    with runtime.store.engine.begin() as conn:
        conn.execute(user_rows.update().where(user_rows.c.id == user.id).values(disabled_at=time.time()))
        conn.execute(session_rows.delete().where(session_rows.c.user_id == user.id))
    record(runtime, actor, "user.disable", f"user:{user.id}", {}, origin)
    return find_user(runtime, user.id)


# --- sessions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewSession:
    """A session just started: the token goes into the cookie, the CSRF token into the page."""

    token: str = field(repr=False)
    csrf_token: str = field(repr=False)
    user: User
    expires_at: float

    def to_dict(self) -> dict[str, object]:
        return {"user": self.user.to_dict(), "csrf_token": self.csrf_token, "expires_at": self.expires_at}


class LoginRefused(InputError):
    """Wrong e-mail or password, or a disabled user (the answer does not say which)."""


def login(
    runtime: Runtime,
    email: object,
    password: object,
    *,
    origin: str | None = None,
    lifetime: float = sessions.DEFAULT_LIFETIME_SECONDS,
) -> NewSession:
    """Start a session for a user whose password matches; `session.login` (or `session.login_failed`).

    After `login_max_failures` failed sign-ins for one address (or `login_max_failures_per_origin` from one
    client address) within `login_lockout_seconds`, sign-ins are refused with `LockedOut` — for unknown
    addresses alike, so the answer says nothing about who has an account (docs/security.md)."""
    address = email.strip().lower() if isinstance(email, str) else ""
    with runtime.store.engine.connect() as conn:
        row = conn.execute(sa.select(user_rows).where(user_rows.c.email == address)).first()
    target = f"user:{row.id}" if row is not None else unknown_user_target(address)
    wait = lockout_wait(runtime, target, origin)
    if wait:
        record(runtime, "anonymous", "session.locked_out", target, {}, origin)
        minutes = max(1, math.ceil(wait / 60))
        raise LockedOut(
            f"too many failed sign-ins for this e-mail address or from this network; try again in {minutes} minutes",
            wait,
        )
    if row is None or row.disabled_at is not None or not users.verify_password(row.password_hash, password):
        record(runtime, "anonymous", "session.login_failed", target, {}, origin)
        raise LoginRefused("wrong e-mail address or password, or the user is disabled", field="password")
    user = _user(row)
    token = sessions.new_token()
    now = time.time()
    with runtime.store.engine.begin() as conn:
        conn.execute(
            session_rows.insert().values(
                token_hash=sessions.token_hash(token),
                user_id=user.id,
                created_at=now,
                expires_at=now + lifetime,
                origin=(origin or "")[:200] or None,
            )
        )
        if users.needs_rehash(row.password_hash):
            new_hash = users.hash_password(str(password))
            conn.execute(user_rows.update().where(user_rows.c.id == user.id).values(password_hash=new_hash))
    record(runtime, f"user:{user.email}", "session.login", f"user:{user.id}", {}, origin)
    return NewSession(token, sessions.csrf_token(token), user, now + lifetime)


class LockedOut(LoginRefused):
    """Sign-ins for this address (or from this client) are refused for `retry_after` more seconds."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message, field="email")
        self.retry_after = retry_after


def unknown_user_target(address: str) -> str:
    """The audit target of a failed sign-in for an address with no account: a hash, never the address, so
    failures for it can be counted (and locked out like a real user's) without keeping it."""
    return "user:unknown:" + hashlib.sha256(address.encode()).hexdigest()[:16]


def lockout_wait(runtime: Runtime, target: str, origin: str | None) -> float:
    """Seconds until `target` (a user, by audit target) or `origin` may try to sign in again; 0 if now.

    Counted from the audit log's `session.login_failed` rows within the last `login_lockout_seconds`: a
    user's since their last successful sign-in, an origin's all (so one network guessing many addresses is
    stopped too). A refused attempt while locked out is not a failure, so the wait does not grow."""
    settings = runtime.settings
    window = settings.login_lockout_seconds
    if window <= 0:
        return 0.0
    now = time.time()
    since = now - window
    failed = (audit_log.c.action == "session.login_failed") & (audit_log.c.at > since)
    waits = [0.0]
    with runtime.store.engine.connect() as conn:
        last_login = conn.execute(
            sa.select(sa.func.max(audit_log.c.at)).where(
                (audit_log.c.action == "session.login") & (audit_log.c.target == target) & (audit_log.c.at > since)
            )
        ).scalar()
        checks = [(audit_log.c.target == target, settings.login_max_failures, last_login)]
        if origin:
            checks.append((audit_log.c.origin == origin[:200], settings.login_max_failures_per_origin, None))
        for where, limit, after in checks:
            if limit <= 0:
                continue
            query = sa.select(audit_log.c.at).where(failed & where)
            if after is not None:
                query = query.where(audit_log.c.at > after)
            times = conn.execute(query.order_by(audit_log.c.at.desc()).limit(limit)).scalars().all()
            if len(times) >= limit:  # the limit-th latest failure leaves the window at times[-1] + window
                waits.append(times[-1] + window - now)
    return max(waits)


def principal_for_session(runtime: Runtime, token: object) -> Principal | None:
    """The principal of a live session token (not expired, user not disabled), None otherwise."""
    if not isinstance(token, str) or not token or len(token) > 100:
        return None
    query = (
        sa.select(
            user_rows.c.id, user_rows.c.email, user_rows.c.role, user_rows.c.disabled_at, session_rows.c.expires_at
        )
        .select_from(session_rows.join(user_rows, user_rows.c.id == session_rows.c.user_id))
        .where(session_rows.c.token_hash == sessions.token_hash(token))
    )
    with runtime.store.engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None or row.disabled_at is not None or row.expires_at < time.time():
        return None
    return roles.user_principal(str(row.id), str(row.email), str(row.role))


def logout(runtime: Runtime, token: str, *, origin: str | None = None) -> None:
    """End a session; recorded as `session.logout`."""
    principal = principal_for_session(runtime, token)
    with runtime.store.engine.begin() as conn:
        conn.execute(session_rows.delete().where(session_rows.c.token_hash == sessions.token_hash(token)))
    if principal is not None:
        record(runtime, principal.actor, "session.logout", f"user:{principal.user_id}", {}, origin)
