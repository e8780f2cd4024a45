"""The audit log's vocabulary: actions and entries. Pure.

An entry says who (`actor`: `key:<prefix> (<name>)`, `user:<email>`, `cli:<os user>`), did what
(`action`, one of ACTIONS), to what (`target`: a key prefix, a user id, a segment, a request id — never a
customer's e-mail or phone: a deletion must find none here), when (`at`, epoch seconds), from where
(`origin`: the client IP of an API call, `cli@<host>` for the command line) and any `detail` (a JSON object).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from omniweave.errors import InputError

ACTIONS = (
    "config.change",
    "segment.save",
    "source.create",
    "source.disable",
    "source.enable",
    "key.create",
    "key.revoke",
    "user.create",
    "user.role",
    "user.disable",
    "user.password",
    "session.login",
    "session.login_failed",
    "session.locked_out",
    "session.logout",
    "privacy.export",
    "privacy.delete",
    "privacy.suppress",
    "privacy.unsuppress",
    "journey.publish",
    "message.send",
    "audience.export",
)


def check_action(action: object) -> str:
    if not isinstance(action, str) or action not in ACTIONS:
        raise InputError(f"unknown audit action {action!r}; expected one of {', '.join(ACTIONS)}", field="action")
    return action


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log."""

    seq: int
    at: float
    actor: str
    action: str
    target: str
    origin: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": datetime.fromtimestamp(self.at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "origin": self.origin,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class AuditPage:
    """Entries of the audit log, newest first, and whether older ones were left out."""

    entries: tuple[AuditEntry, ...]
    more: bool

    def to_dict(self) -> dict[str, Any]:
        return {"entries": [entry.to_dict() for entry in self.entries], "more": self.more}
