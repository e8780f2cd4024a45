"""The policy check on the operational store: lock the person, gather the facts, decide, record.

`check(conn, runtime, intent, profile, address, now=…)` runs inside the caller's transaction, so the
caller's ledger insert (on a `send` verdict) commits together with the check — and nobody else can
pass a cap for the same person in between:

- the person's `policy_persons` row is written first (insert, or update when it exists). On SQLite
  that first write takes the database's write lock (pysqlite begins the transaction at the first
  write), so the reads that follow see every committed send and no other writer can commit until we
  do; on PostgreSQL the upsert (`INSERT … ON CONFLICT DO UPDATE`: one round trip instead of an insert,
  a `SELECT … FOR UPDATE` and an update) locks the row exactly as `FOR UPDATE` would — a second
  sender's upsert waits until the first commits — and the reads that follow (READ COMMITTED: a fresh
  snapshot per statement) see the sends committed before.
  So the caller must call `check` before anything else in its transaction.
- the facts: the profile's consent columns and zone, the address's suppression, the WhatsApp
  conversation's last inbound message, and the person's ledger rows in the longest cap window (rows
  of classes whose caps are ignored, and rows that never went out — suppressed, dead — do not count);
- `activate.policy.decide`, and one `policy_decisions` row with the verdict and its reason.

`decisions(engine, …)` reads them back (for `journeys explain` and `messages`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from omniweave.activate.policy import CONSENT_COLUMNS, PURPOSE_COLUMN, Facts, SendIntent, Verdict, decide
from omniweave.channels.port import address_key
from omniweave.runtime import Runtime
from omniweave.settings import PolicySettings
from omniweave.storage.ops.tables import sends, suppressions
from omniweave.storage.ops.tables.policy import policy_decisions, policy_persons
from omniweave.storage.ops.tables.reach import conversations

NOT_SENT = ("suppressed", "dead")
"""Ledger statuses of rows that never reached the person: they do not count against a cap."""

# The statements are built once and run with parameters: building SQLAlchemy statements per call cost
# more than running them (bench/policy.py).
_P = sa.bindparam
_sqlite_lock, _pg_lock = sqlite.insert(policy_persons), postgresql.insert(policy_persons)
_LOCK = {  # insert the person's row, or update it when it exists: either way it is locked until commit
    "sqlite": _sqlite_lock.on_conflict_do_update(
        index_elements=["person_id"], set_={"updated_at": _sqlite_lock.excluded.updated_at}
    ),
    "postgresql": _pg_lock.on_conflict_do_update(
        index_elements=["person_id"], set_={"updated_at": _pg_lock.excluded.updated_at}
    ),
}
_LOCK_UPDATE = policy_persons.update().where(policy_persons.c.person_id == _P("p")).values(updated_at=_P("now"))
_SUPPRESSED = sa.select(suppressions.c.reason).where(
    suppressions.c.channel == _P("channel"), suppressions.c.address == _P("address")
)
_RECENT = sa.select(sends.c.created_at, sends.c.channel).where(
    sends.c.person_id == _P("person_id"),
    sends.c.created_at > _P("since"),
    sends.c.status.not_in(NOT_SENT),
    sends.c.message_class.not_in(_P("ignored", expanding=True)),
)
_LAST_INBOUND = sa.select(conversations.c.last_inbound_at).where(
    conversations.c.channel == "whatsapp", conversations.c.address == _P("address")
)
_RECORD = policy_decisions.insert()


def lock_person(conn: sa.Connection, person_id: str, now: float) -> None:
    """Take the person's policy lock for the rest of `conn`'s transaction (see the module docstring)."""
    values = {"person_id": person_id, "updated_at": now}
    upsert = _LOCK.get(conn.dialect.name)
    if upsert is not None:
        conn.execute(upsert, values)
    else:
        if not conn.execute(_LOCK_UPDATE, {"p": person_id, "now": now}).rowcount:
            conn.execute(policy_persons.insert(), values)


def gather(
    conn: sa.Connection,
    rules: PolicySettings,
    intent: SendIntent,
    profile: Mapping[str, Any],
    address: str,
    now: float,
) -> Facts:
    """The facts `decide` needs about this person and address, read on `conn`."""
    consent = {c: profile.get(c) for c in (*CONSENT_COLUMNS.values(), PURPOSE_COLUMN)}
    key = address_key(intent.channel, address) if address else ""
    suppressed = conn.execute(_SUPPRESSED, {"channel": intent.channel, "address": key}).scalar()
    recent: list[tuple[float, str]] = []
    if rules.caps:
        ignored = [name for name, rule in rules.classes if rule.capped == "ignore"]
        since = now - rules.longest_window
        found = conn.execute(_RECENT, {"person_id": intent.person_id, "since": since, "ignored": ignored})
        recent = [(float(t), str(c)) for t, c in found]
    last_inbound = None
    if intent.channel == "whatsapp":
        last_inbound = conn.execute(_LAST_INBOUND, {"address": key}).scalar()
    zone = profile.get("timezone")
    return Facts(
        consent=consent,
        suppressed=None if suppressed is None else str(suppressed),
        timezone=str(zone) if zone else None,
        recent=recent,
        whatsapp_last_inbound=None if last_inbound is None else float(last_inbound),
    )


def record(conn: sa.Connection, intent: SendIntent, verdict: Verdict, now: float) -> None:
    """One `policy_decisions` row: the intent, the verdict and its reason."""
    conn.execute(
        _RECORD,
        {
            "key": intent.key,
            "person_id": intent.person_id,
            "channel": intent.channel,
            "message_class": intent.message_class,
            "journey": intent.journey,
            "outcome": verdict.outcome,
            "reason": verdict.reason[:1000],
            "retry_at": verdict.retry_at,
            "at": now,
        },
    )


def check(
    conn: sa.Connection,
    runtime: Runtime,
    intent: SendIntent,
    profile: Mapping[str, Any],
    address: str,
    *,
    now: float,
) -> Verdict:
    """Lock the person, gather the facts, decide and record — inside the caller's transaction.

    `profile`: the person's profile row (consent columns, `timezone`; a journey puts its own zone there
    when the person has none); `address`: where the message goes on `intent.channel` (as shown, e.g. an
    e-mail address or an E.164 number). On `send` the caller inserts the ledger row on the same `conn`
    before committing; the lock holds until then."""
    return check_with(conn, runtime.settings.policy, intent, profile, address, now=now)


def check_with(
    conn: sa.Connection,
    rules: PolicySettings,
    intent: SendIntent,
    profile: Mapping[str, Any],
    address: str,
    *,
    now: float,
) -> Verdict:
    """`check` with the rules given (no Runtime needed: tests and benchmarks)."""
    lock_person(conn, intent.person_id, now)
    facts = gather(conn, rules, intent, profile, address, now)
    verdict = decide(intent, facts, rules, now)
    record(conn, intent, verdict, now)
    return verdict


@dataclass(frozen=True)
class Decision:
    """One recorded verdict."""

    key: str
    person_id: str | None
    channel: str
    message_class: str
    journey: str | None
    outcome: str
    reason: str | None
    retry_at: float | None
    at: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def decisions(
    engine: sa.Engine, *, person_id: str | None = None, key: str | None = None, limit: int = 1000
) -> list[Decision]:
    """Recorded verdicts (of one person, or one ledger key), oldest first."""
    table = policy_decisions
    query = sa.select(*(table.c[f] for f in Decision.__dataclass_fields__)).order_by(table.c.at, table.c.id)
    if person_id is not None:
        query = query.where(table.c.person_id == person_id)
    if key is not None:
        query = query.where(table.c.key == key)
    with engine.connect() as conn:
        return [Decision(**m) for m in conn.execute(query.limit(limit)).mappings()]


__all__ = ["Decision", "check", "check_with", "decisions", "gather", "lock_person", "record"]
