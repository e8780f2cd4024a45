"""The demo's dashboard users: one per role, so whoever runs `omniweave demo` can sign in and look around.

The password is made once per home (random, 16 characters), kept in `<home>/demo/dashboard-password.txt`
(readable by its owner only) and printed by `omniweave demo` with the dashboard's address. Users that exist
already are left as they are (a second run of the demo prints the same password).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from omniweave.privacy.roles import ROLES
from omniweave.privacy.service import access
from omniweave.runtime import Runtime
from omniweave.settings import Settings

DOMAIN = "demo.omniweave.example"
"""The demo users' e-mail domain (example.*: never a real mailbox)."""


def demo_email(role: str) -> str:
    return f"{role.replace('_', '-')}@{DOMAIN}"


def dashboard_users(settings: Settings) -> tuple[dict[str, str], str]:
    """The demo users (role → e-mail), made if missing, and their password."""
    folder = settings.home_path / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    secret_file = folder / "dashboard-password.txt"
    password = _password(secret_file)
    runtime = Runtime(settings)
    try:
        existing = {user.email for user in access.list_users(runtime)}
        emails = {}
        for role in ROLES:
            email = demo_email(role)
            emails[role] = email
            if email not in existing:
                access.create_user(runtime, email, f"Demo {role.replace('_', ' ')}", role, password, actor="demo")
    finally:
        runtime.close()
    return emails, password


def _password(path: Path) -> str:
    if path.exists():
        text = path.read_text(encoding="utf-8").strip()
        if len(text) >= 12:
            return text
    password = secrets.token_urlsafe(12)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(password + "\n")
    return password
