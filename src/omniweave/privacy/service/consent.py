"""The consent history: statements recorded with their source and time, and each person's latest.

`sync_consent` reads statements from the event log (events, imports, channel feedback: everything that
reached the log) and from the channels' suppression list (unsubscribes, STOP), and records the new ones;
it is safe to run again (a statement is recorded once). `record_consent` takes one statement through the
API or the CLI: it is recorded at once and also sent into the inbox as an event, so the next
`profiles build` agrees. `consent_of` gives a person's history and the latest statement per purpose.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from omniweave.collect.emit import emit
from omniweave.errors import InputError
from omniweave.privacy.consent import CHANNEL_PURPOSES, CHANNEL_TRAITS, Statement, latest, statements_of_event
from omniweave.privacy.masking import mask
from omniweave.privacy.service.people import find_subject
from omniweave.privacy.subjects import subject_digests
from omniweave.runtime import Runtime
from omniweave.storage.ops.tables.messages import suppressions
from omniweave.storage.ops.tables.privacy import consent_history, identifier_digest

API_SOURCE = "privacy"
"""The inbox source of the consent events `record_consent` sends."""
CONSENT_EVENT = "Consent Updated"
_CHANNEL_OF_SUPPRESSION = {"email": ("email", "email"), "sms": ("sms", "phone"), "whatsapp": ("whatsapp", "phone")}
_STATEMENT_SQL = """
SELECT message_id, epoch(timestamp) AS timestamp, source, user_id, anonymous_id, event, channel, traits,
       context_consent
FROM events
WHERE coalesce(context_consent, '') NOT IN ('', '{}') OR event = 'Unsubscribed'
   OR (traits IS NOT NULL AND (traits LIKE '%_opt_in%' OR traits LIKE '%_consent%'))
"""


@dataclass(frozen=True)
class ConsentSync:
    """What one `sync_consent` run read and recorded."""

    events_read: int
    suppressions_read: int
    recorded: int

    def to_dict(self) -> dict[str, Any]:
        return {"events_read": self.events_read, "suppressions_read": self.suppressions_read, "recorded": self.recorded}


@dataclass(frozen=True)
class ConsentView:
    """A person's consent: every statement (oldest first) and the latest per purpose."""

    person_id: str | None
    history: tuple[Statement, ...]
    current: dict[str, bool]

    def to_dict(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "current": dict(self.current),
            "history": [s.to_dict() for s in self.history],
        }


def _insert(runtime: Runtime, statements: Iterable[Statement]) -> int:
    """Record statements (already recorded ones are skipped); returns how many were new."""
    now = time.time()
    rows = [
        {
            "subject": identifier_digest(s.kind, s.value),
            "kind": s.kind,
            "purpose": s.purpose,
            "granted": s.granted,
            "source": s.source,
            "reference": s.reference[:200],
            "stated_at": s.stated_at,
            "recorded_at": now,
        }
        for s in statements
    ]
    if not rows:
        return 0
    store = runtime.store
    if store.dialect == "postgresql":
        insert: Any = postgresql.insert(consent_history).on_conflict_do_nothing(constraint="consent_history_statement")
    else:
        insert = sqlite.insert(consent_history).on_conflict_do_nothing()
    new = 0
    with store.engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            chunk = rows[start : start + 5000]
            before = conn.execute(sa.select(sa.func.count()).select_from(consent_history)).scalar_one()
            conn.execute(insert, chunk)
            new += conn.execute(sa.select(sa.func.count()).select_from(consent_history)).scalar_one() - before
    return int(new)


def sync_consent(runtime: Runtime) -> ConsentSync:
    """Record every consent statement of the event log and the suppression list not recorded yet."""
    purposes = runtime.settings.privacy.purposes
    sources = {str(s["id"]): str(s["name"]) for s in runtime.store.list_sources()}
    statements: list[Statement] = []
    warehouse = runtime.warehouse()
    events_read = 0
    if "events" in warehouse.names():
        for row in warehouse.sql(_STATEMENT_SQL).to_pylist():
            events_read += 1
            name = sources.get(str(row.get("source")), "")
            source = "import" if name.startswith("import:") else "channel" if name.startswith("channel") else "event"
            statements += statements_of_event(row, purposes, source)
    with runtime.store.engine.connect() as conn:
        suppressed = conn.execute(
            sa.select(suppressions).where(suppressions.c.reason.in_(("unsubscribe", "stop")))
        ).all()
    for row in suppressed:
        purpose, kind = _CHANNEL_OF_SUPPRESSION.get(row.channel, (None, None))
        if purpose is None or kind is None or purpose not in purposes:
            continue
        reference = f"suppression:{row.channel}:{row.reason}"
        statements.append(
            Statement(kind, str(row.address), purpose, False, "channel", reference, float(row.created_at))
        )
    return ConsentSync(events_read, len(suppressed), _insert(runtime, statements))


_RECORDED_UNDER = {"user_id": 0, "email": 1, "phone": 2}
"""The identifier an API or CLI statement is recorded under, by preference (activate/service/policy.py reads
the history through the profile's user ids, e-mails and phones)."""


def record_consent(
    runtime: Runtime, identifier: str, purpose: str, granted: bool, *, reference: str | None = None
) -> ConsentView:
    """Record one statement for the person `identifier` names (through the API or the CLI), and send it
    into the inbox as a `Consent Updated` event (categoryPreferences, or the channel's opt-in trait) so
    that profiles agree after the next load and build."""
    purposes = runtime.settings.privacy.purposes
    if purpose not in purposes:
        raise InputError(f"unknown purpose {purpose!r}; expected one of {', '.join(purposes)}", field="purpose")
    subject = find_subject(runtime, identifier)
    # under the identifier the policy looks for at send time (a profile lists user ids, e-mails, phones)
    kind, value = min(subject.identifiers, key=lambda i: (_RECORDED_UNDER.get(i[0], len(_RECORDED_UNDER)), i))
    at = time.time()
    reference = reference or f"api:{uuid.uuid4().hex}"
    _insert(runtime, [Statement(kind, value, purpose, granted, "api", reference, at)])
    event: dict[str, Any] = {"type": "track", "event": CONSENT_EVENT, "messageId": reference}
    user = next((v for k, v in subject.identifiers if k == "user_id"), None)
    anonymous = next((v for k, v in subject.identifiers if k == "anonymous_id"), None)
    if user:
        event["userId"] = user
    elif anonymous:
        event["anonymousId"] = anonymous
    else:  # known by an e-mail or phone only: an identify that names it
        event = {"type": "identify", "messageId": reference, "anonymousId": f"consent-{uuid.uuid4().hex}"}
        event["traits"] = {kind: value}
    if purpose in CHANNEL_PURPOSES:
        event.setdefault("traits", {})[CHANNEL_TRAITS[purpose]] = granted
        if event["type"] == "track":
            event["type"], event["properties"] = "identify", None
            event.pop("event")
            event.pop("properties")
    else:
        event["context"] = {"consent": {"categoryPreferences": {purpose: granted}}}
    event["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"
    emit(runtime.store, API_SOURCE, [event])
    return consent_of(runtime, identifier)


def consent_of(runtime: Runtime, identifier: str) -> ConsentView:
    """The person's consent history (every identifier of theirs) and the latest statement per purpose."""
    subject = find_subject(runtime, identifier)
    digests = subject_digests(subject.identifiers)
    with runtime.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(consent_history)
            .where(consent_history.c.subject.in_(digests))
            .order_by(consent_history.c.stated_at, consent_history.c.id)
        ).all()
    masked = {identifier_digest(k, v): (k, mask(v)) for k, v in subject.identifiers}
    history = tuple(
        Statement(
            r.kind,
            masked.get(r.subject, (r.kind, "?"))[1],
            r.purpose,
            bool(r.granted),
            r.source,
            r.reference,
            r.stated_at,
        )
        for r in rows
    )
    return ConsentView(subject.person_id, history, {p: s.granted for p, s in latest(history).items()})
