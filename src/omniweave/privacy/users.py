"""Dashboard users: validating a new user, and their passwords hashed with argon2 (argon2-cffi). Pure.

Passwords are hashed with argon2id at argon2-cffi's default cost (RFC 9106's low-memory profile); a hash
made with older parameters is re-hashed at the next successful sign-in (`needs_rehash`). A password must
be 12 to 256 characters; nothing else is imposed (NIST SP 800-63B).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from omniweave.errors import InputError
from omniweave.privacy.roles import check_role

MIN_PASSWORD, MAX_PASSWORD = 12, 256
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_hasher = PasswordHasher()


@dataclass(frozen=True)
class User:
    """A dashboard user as the store keeps it (never the password; its hash stays in the store)."""

    id: str
    email: str
    name: str
    role: str
    created_at: float
    disabled_at: float | None = None

    @property
    def active(self) -> bool:
        return self.disabled_at is None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "role": self.role,
            "created_at": self.created_at,
            "disabled_at": self.disabled_at,
        }


def check_email(email: object) -> str:
    """The e-mail address, trimmed and lower-cased, or an InputError saying what was expected."""
    if not isinstance(email, str) or not _EMAIL.fullmatch(email.strip()) or len(email) > 320:
        raise InputError("expected an e-mail address such as ann@example.com", field="email")
    return email.strip().lower()


def check_password(password: object) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        got = f"{len(password)} characters" if isinstance(password, str) else type(password).__name__
        raise InputError(
            f"a password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long; got {got}", field="password"
        )
    return password


def check_new_user(email: object, name: object, role: object, password: object) -> tuple[str, str, str, str]:
    """A new user's fields, checked: (email, name, role, password)."""
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise InputError("expected a name of 1 to 200 characters", field="name")
    return check_email(email), name.strip(), check_role(role), check_password(password)


def hash_password(password: str) -> str:
    """The argon2id hash of a password (salted; the encoded string carries its parameters)."""
    return _hasher.hash(check_password(password))


def verify_password(password_hash: str, password: object) -> bool:
    """Whether `password` matches `password_hash` (False for a wrong or malformed one, never an error)."""
    if not isinstance(password, str) or len(password) > MAX_PASSWORD:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether a hash was made with other parameters than today's (re-hash it at sign-in)."""
    return _hasher.check_needs_rehash(password_hash)
