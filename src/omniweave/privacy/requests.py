"""Data-subject requests: kinds, statuses, and the receipt a request leaves per target.

A request is a job: created `pending`, `running` while it works, `done` or `failed` (a failed one
can be run again: every step is safe to repeat). Its receipts say, per target (an event-log
dataset, an operational table, a file under the home), what was done, to how many rows, when.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS = ("export", "delete", "suppress", "unsuppress", "retention")
STATUSES = ("pending", "running", "done", "failed")


@dataclass(frozen=True)
class Receipt:
    """What one request did to one target."""

    target: str  # e.g. warehouse:events, ops:sends, file:audiences/x.csv
    action: str  # removed | anonymised | rewritten | written | blocked | unblocked | none
    count: int
    detail: str = ""
    at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "action": self.action, "count": self.count, "detail": self.detail, "at": self.at}


@dataclass(frozen=True)
class RequestResult:
    """A request as the shells show it: its id, kind, status, the person (masked) and its receipts."""

    id: str
    kind: str
    status: str
    subject: str
    person_id: str | None
    created_at: float
    finished_at: float | None
    error: str | None = None
    receipts: tuple[Receipt, ...] = field(default=())
    bundle: dict[str, Any] | None = None  # an export's document

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "subject": self.subject,
            "person_id": self.person_id,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "error": self.error,
            "receipts": [r.to_dict() for r in self.receipts],
        }
        if self.bundle is not None:
            out["bundle"] = self.bundle
        return out
