"""The audit log's service: `record` (what every module that changes something calls) and `entries`.

The log lives in the operational store's `audit_log` table, which refuses UPDATE and DELETE (triggers
of revision 0008), so this module has no way to change an entry and neither has anyone else.
"""

from __future__ import annotations

import getpass
import socket
import time
from typing import Any

import orjson
import sqlalchemy as sa

from omniweave.errors import InputError
from omniweave.privacy.audit import AuditEntry, AuditPage, check_action
from omniweave.runtime import Runtime
from omniweave.storage.ops.tables.access import audit_log

MAX_PAGE = 1000


def cli_actor() -> str:
    """How a command-line user is named in the audit log: `cli:<operating-system user>`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"


def cli_origin() -> str:
    """Where a command-line change comes from: `cli@<host name>`."""
    return f"cli@{socket.gethostname()}"


def record(
    runtime: Runtime,
    actor: str,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
    origin: str | None = None,
) -> AuditEntry:
    """Append one entry to the audit log and return it.

    `actor` is who (a Principal's `actor`, or `cli_actor()`), `action` one of privacy.audit.ACTIONS,
    `target` what was acted on (an id: never a customer's e-mail or phone), `detail` a JSON object,
    `origin` where from (a client IP; `cli_origin()` by default)."""
    check_action(action)
    if not isinstance(actor, str) or not actor:
        raise InputError("expected who acted, e.g. user:ann@example.com or cli:ann", field="actor")
    at = time.time()
    body = orjson.dumps(detail or {}, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS).decode()
    where = origin or cli_origin()
    who, what, where = actor[:200], str(target)[:500], where[:200]
    statement = audit_log.insert().values(at=at, actor=who, action=action, target=what, detail=body, origin=where)
    with runtime.store.engine.begin() as conn:
        seq = conn.execute(statement.returning(audit_log.c.seq)).scalar_one()
    return AuditEntry(int(seq), at, who, action, what, where, detail or {})


def entries(
    runtime: Runtime,
    *,
    action: str | None = None,
    actor: str | None = None,
    since: float | None = None,
    before_seq: int | None = None,
    limit: int = 100,
) -> AuditPage:
    """The newest entries first, filtered by action (an exact action, or a prefix ending in `.`, such as
    `key.`), actor, time (`since`, epoch seconds) and `before_seq` (the next page); at most `limit`."""
    if not 1 <= limit <= MAX_PAGE:
        raise InputError(f"expected a limit from 1 to {MAX_PAGE}, got {limit}", field="limit")
    query = sa.select(audit_log).order_by(audit_log.c.seq.desc()).limit(limit + 1)
    if action:
        if action.endswith("."):
            query = query.where(audit_log.c.action.startswith(action, autoescape=True))
        else:
            query = query.where(audit_log.c.action == check_action(action))
    if actor:
        query = query.where(audit_log.c.actor == actor)
    if since is not None:
        query = query.where(audit_log.c.at >= since)
    if before_seq is not None:
        query = query.where(audit_log.c.seq < before_seq)
    with runtime.store.engine.connect() as conn:
        rows = conn.execute(query).all()
    found = tuple(
        AuditEntry(int(r.seq), float(r.at), r.actor, r.action, r.target, r.origin, orjson.loads(r.detail))
        for r in rows[:limit]
    )
    return AuditPage(found, more=len(rows) > limit)
