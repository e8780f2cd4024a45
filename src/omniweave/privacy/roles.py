"""Who may do what: the scopes of secret API keys, the roles of dashboard users, and the principal
(the key or user behind a request) that every protected route checks. Pure.

Scopes, one per class of route:

    profiles:read      read profiles and segments (GET /v1/profiles, /v1/segments)
    config:manage      change configuration: segment definitions, sources, keys
    journeys:run       publish and run journeys, send messages
    privacy:admin      data-subject requests (export, delete, suppress) and reading the audit log
    users:manage       create, change and disable dashboard users (owners only; never a key)

Roles of dashboard users:

    owner             every scope, and users:manage
    marketer          profiles:read, config:manage, journeys:run
    analyst           profiles:read, with every e-mail, phone and name masked
    privacy_officer   profiles:read and privacy:admin

A write key is not a principal: it only collects events (a write key on any other route is a 403).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from omniweave.errors import InputError
from omniweave.privacy import masking

PROFILES_READ = "profiles:read"
CONFIG_MANAGE = "config:manage"
JOURNEYS_RUN = "journeys:run"
PRIVACY_ADMIN = "privacy:admin"
USERS_MANAGE = "users:manage"

KEY_SCOPES = (PROFILES_READ, CONFIG_MANAGE, JOURNEYS_RUN, PRIVACY_ADMIN)
"""The scopes a secret API key may have (users:manage belongs to owners, never to a key)."""
ALL_SCOPES = (*KEY_SCOPES, USERS_MANAGE)

OWNER, MARKETER, ANALYST, PRIVACY_OFFICER = "owner", "marketer", "analyst", "privacy_officer"
ROLES: dict[str, frozenset[str]] = {
    OWNER: frozenset(ALL_SCOPES),
    MARKETER: frozenset({PROFILES_READ, CONFIG_MANAGE, JOURNEYS_RUN}),
    ANALYST: frozenset({PROFILES_READ}),
    PRIVACY_OFFICER: frozenset({PROFILES_READ, PRIVACY_ADMIN}),
}
MASKED_ROLES = frozenset({ANALYST})
"""Roles that see personal data (e-mail, phone, name) only masked."""


def check_role(role: object) -> str:
    """The role, or an InputError naming what is valid."""
    if not isinstance(role, str) or role not in ROLES:
        raise InputError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}", field="role")
    return role


def check_scopes(scopes: object) -> tuple[str, ...]:
    """The scopes of a new key (sorted, unique), or an InputError naming the first bad one."""
    if isinstance(scopes, str):
        scopes = [part.strip() for part in scopes.split(",") if part.strip()]
    if not isinstance(scopes, (list, tuple, set, frozenset)) or not scopes:
        raise InputError(f"expected one or more scopes of {', '.join(KEY_SCOPES)}", field="scopes")
    for position, scope in enumerate(scopes):
        if scope not in KEY_SCOPES:
            raise InputError(
                f"unknown scope {scope!r}; expected one of {', '.join(KEY_SCOPES)}", field=f"scopes[{position}]"
            )
    return tuple(sorted(set(scopes)))


@dataclass(frozen=True)
class Principal:
    """The key or user behind a request: what it is called (for the audit log), and what it may do."""

    kind: str  # "key" | "user" | "cli"
    name: str  # the key's prefix and name, the user's e-mail, or the operating-system user of the CLI
    scopes: frozenset[str] = field(default_factory=frozenset)
    role: str | None = None
    user_id: str | None = None

    @property
    def masks_pii(self) -> bool:
        """Whether this principal sees e-mail addresses, phone numbers and names only masked."""
        return self.role in MASKED_ROLES

    def allows(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def actor(self) -> str:
        """How the audit log names this principal: `key:<prefix> (<name>)`, `user:<email>`, `cli:<user>`."""
        return f"{self.kind}:{self.name}"

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "name": self.name, "role": self.role, "scopes": sorted(self.scopes)}


def user_principal(user_id: str, email: str, role: str) -> Principal:
    """The principal of a signed-in user with `role`."""
    return Principal("user", email, ROLES[check_role(role)], role=role, user_id=user_id)


def key_principal(prefix: str, name: str, scopes: frozenset[str]) -> Principal:
    """The principal of a secret key (no scopes recorded: every key scope, as before scopes existed)."""
    return Principal("key", f"{prefix} ({name})", scopes or frozenset(KEY_SCOPES))


_NAME_KEYS = frozenset({"name", "first_name", "last_name", "firstName", "lastName", "full_name", "fullName"})
_IDENTIFIER_KEYS = frozenset({"email", "phone", "e-mail", "mobile", "address", "street"})


def mask_personal_data(document: Any, key: str | None = None) -> Any:
    """A JSON document with every e-mail address and phone number masked wherever it appears (identifier
    values, traits, event properties, free text), and values under name and address keys masked too: what
    a role in MASKED_ROLES sees."""
    if isinstance(document, dict):
        kind = document.get("kind")
        if isinstance(kind, str) and isinstance(document.get("value"), str):  # an identifier {kind, value}
            return {**document, "value": masking.mask(document["value"])}
        return {k: mask_personal_data(v, k) for k, v in document.items()}
    if isinstance(document, list):
        return [mask_personal_data(item, key) for item in document]
    if isinstance(document, str):
        if key in _NAME_KEYS:
            return masking.mask_name(document)
        if key in _IDENTIFIER_KEYS:
            return masking.mask(document)
        return masking.mask_text(document)
    return document


SourceState = Literal["disable", "enable"]
