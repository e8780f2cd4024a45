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
- the facts: the profile's consent columns (with the consent history's statements made since over them:
  `with_stated_consent`) and zone, the address's suppression, the WhatsApp
  conversation's last inbound message, and the person's ledger rows in the longest cap window (rows
  of classes whose caps are ignored, and rows that never went out — suppressed, dead — do not count);
- `activate.policy.decide`, and one `policy_decisions` row with the verdict and its reason.

`decisions(engine, …)` reads them back (for `journeys explain` and `messages`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from omniweave.activate.policy import CONSENT_COLUMNS, PURPOSE_COLUMN, Facts, SendIntent, Verdict, decide
from omniweave.channels.port import address_key
from omniweave.runtime import Runtime
from omniweave.settings import PolicySettings
from omniweave.storage.ops.among import among
from omniweave.storage.ops.consent import latest_consent_at
from omniweave.storage.ops.tables import sends, suppressions
from omniweave.storage.ops.tables.policy import policy_decisions, policy_persons
from omniweave.storage.ops.tables.reach import conversations
from omniweave.storage.ops.unnest import insert_unnest, unnest_params

_CHUNK = 500  # values per IN list or multi-row statement
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


def _lock_many_pg() -> Any:
    """`lock_persons` on PostgreSQL: the ids as one array, unnested in order and upserted; one statement compiled
    once (a multi-row VALUES of 500 was compiled again for every batch: 7% of a journey batch, profiled)."""
    ids = sa.func.unnest(_P("ids", type_=postgresql.ARRAY(sa.String))).table_valued(sa.column("p", sa.String))
    ids = ids.render_derived()
    rows = sa.select(ids.c.p, _P("now", type_=sa.Float)).order_by(ids.c.p)
    upsert = postgresql.insert(policy_persons).from_select(["person_id", "updated_at"], rows)
    return upsert.on_conflict_do_update(index_elements=["person_id"], set_={"updated_at": upsert.excluded.updated_at})


_LOCK_MANY_PG = _lock_many_pg()
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
_DECISION_COLUMNS = ("key", "person_id", "channel", "message_class", "journey", "outcome", "reason", "retry_at", "at")
_RECORD_UNNEST = insert_unnest(policy_decisions, _DECISION_COLUMNS)


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
    key = address_key(intent.channel, address) if address else ""
    consent = with_stated_consent(conn, [(intent, profile, key)])[0]
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


_ADDRESS_KINDS = {"email": "email", "sms": "phone", "whatsapp": "phone"}
_LISTED_KINDS = ("user_id", "anonymous_id", "email", "phone")


def _listed(values: Any) -> Sequence[Any]:
    return () if values is None else list(values)


def with_stated_consent(
    conn: sa.Connection, items: Sequence[tuple[SendIntent, Mapping[str, Any], str]]
) -> list[dict[str, Any]]:
    """Per send (intent, profile, address key): the profile's consent columns with the consent history's
    latest statements over them (one query for the batch: storage/ops/consent.py), so a withdrawal made
    since the profiles were built stops the next send. A stated no wins from either side; a stated yes in
    the history fills in unless the profile says no (a later no from an event not yet in the history must
    not be overruled by an older yes) — but a yes stated after the person's last event the profile saw
    (`last_seen`) is newer than anything the profile knows, and wins: someone who opted out and later
    confirms a sign-up form's double opt-in is sent to before the next profile build."""
    people = []
    for intent, profile, key in items:
        known = listed_identifiers(profile)
        if key and intent.channel in _ADDRESS_KINDS:
            known.append((_ADDRESS_KINDS[intent.channel], key))
        people.append(known)
    stated = latest_consent_at(conn, people)
    out = []
    for (_, profile, _), said in zip(items, stated, strict=True):
        consent = {c: profile.get(c) for c in (*CONSENT_COLUMNS.values(), PURPOSE_COLUMN)}
        for column, statement in said.items():
            if column in consent:
                consent[column] = stated_over(consent[column], statement, profile.get("last_seen"))
        out.append(consent)
    return out


def listed_identifiers(profile: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (kind, value) identifiers a profile row lists, as the consent history keys its statements."""
    return [(kind, str(v)) for kind in _LISTED_KINDS for v in _listed(profile.get(f"{kind}s"))]


def stated_over(current: Any, statement: tuple[Any, float], last_seen: Any) -> Any:
    """A profile's consent value with the history's latest statement (value, when) over it, by the rule of
    `with_stated_consent`: a no wins, a yes fills in unless the profile says no, and a yes stated after the
    profile's `last_seen` wins over its no."""
    value, at = statement
    seen = _epoch(last_seen)
    newer = seen is not None and at > seen
    return value if value is False or current is not False or newer else current


def _epoch(value: Any) -> float | None:
    """A profile's timestamp (datetime, naive = UTC, or epoch seconds) as epoch seconds; None when absent."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


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


def lock_persons(conn: sa.Connection, person_ids: Sequence[str], now: float) -> None:
    """`lock_person` for many persons: their rows written in ascending order (two batches never wait for
    each other in a cycle), one statement (PostgreSQL: the ids as one array, upserted in the database's order of
    them; SQLite: a multi-row upsert per 500)."""
    ordered = sorted(set(person_ids))
    if conn.dialect.name == "postgresql":  # in the database's order of the ids (every worker's the same)
        if ordered:
            conn.execute(_LOCK_MANY_PG, {"ids": ordered, "now": now})
        return
    upsert = _LOCK.get(conn.dialect.name)
    for start in range(0, len(ordered), _CHUNK):
        part = [{"person_id": p, "updated_at": now} for p in ordered[start : start + _CHUNK]]
        if upsert is not None:
            conn.execute(upsert.values(part))  # one multi-row statement: rows locked in the order given
        else:
            for values in part:
                lock_person(conn, str(values["person_id"]), now)


def gather_many(
    conn: sa.Connection,
    rules: PolicySettings,
    items: Sequence[tuple[SendIntent, Mapping[str, Any], str]],
    now: float,
) -> list[Facts]:
    """`gather` for many sends: one query each for the suppressions, the persons' recent sends and the
    WhatsApp conversations, whatever the number of sends."""
    keyed = [
        (intent, profile, address_key(intent.channel, address) if address else "") for intent, profile, address in items
    ]
    suppressed: dict[tuple[str, str], str] = {}
    by_channel: dict[str, set[str]] = {}
    for i, _, k in keyed:
        if k:
            by_channel.setdefault(i.channel, set()).add(k)
    for channel, wanted in sorted(by_channel.items()):  # channel = … AND address IN (…): an index range each
        addresses = sorted(wanted)
        for start in range(0, len(addresses), _CHUNK):
            found = conn.execute(
                sa.select(suppressions.c.channel, suppressions.c.address, suppressions.c.reason).where(
                    suppressions.c.channel == channel,
                    among(conn, suppressions.c.address, addresses[start : start + _CHUNK]),
                )
            )
            suppressed.update({(str(c), str(a)): str(r) for c, a, r in found})
    recent: dict[str, list[tuple[float, str]]] = {}
    if rules.caps:
        ignored = [name for name, rule in rules.classes if rule.capped == "ignore"]
        since = now - rules.longest_window
        persons = sorted({i.person_id for i, _, _ in keyed})
        for start in range(0, len(persons), _CHUNK):
            query = sa.select(sends.c.person_id, sends.c.created_at, sends.c.channel).where(
                among(conn, sends.c.person_id, persons[start : start + _CHUNK]),
                sends.c.created_at > since,
                sends.c.status.not_in(NOT_SENT),
            )
            if ignored:
                query = query.where(sends.c.message_class.not_in(ignored))
            for person, t, c in conn.execute(query):
                recent.setdefault(str(person), []).append((float(t), str(c)))
    stated = with_stated_consent(conn, keyed)
    inbound: dict[str, float] = {}
    whatsapp = sorted({k for i, _, k in keyed if i.channel == "whatsapp" and k})
    for start in range(0, len(whatsapp), _CHUNK):
        talks = conn.execute(
            sa.select(conversations.c.address, conversations.c.last_inbound_at).where(
                conversations.c.channel == "whatsapp", conversations.c.address.in_(whatsapp[start : start + _CHUNK])
            )
        )
        inbound.update({str(a): float(t) for a, t in talks if t is not None})
    out = []
    for (intent, profile, key), consent in zip(keyed, stated, strict=True):
        zone = profile.get("timezone")
        out.append(
            Facts(
                consent=consent,
                suppressed=suppressed.get((intent.channel, key)),
                timezone=str(zone) if zone else None,
                recent=recent.setdefault(intent.person_id, []),
                whatsapp_last_inbound=inbound.get(key) if intent.channel == "whatsapp" else None,
            )
        )
    return out


def check_many(
    conn: sa.Connection,
    runtime: Runtime | PolicySettings,
    items: Sequence[tuple[SendIntent, Mapping[str, Any], str]],
    *,
    now: float,
) -> list[Verdict]:
    """`check` for a batch of sends (intent, profile, address) in the caller's transaction, in a few
    statements: the persons locked in ascending order, the facts gathered with one query per kind, a
    verdict per send in the order given, and the decisions recorded in one statement.

    Sends of one person in the batch see each other: a `send` verdict counts against the caps of the
    person's later sends in the batch (the caller inserts a ledger row for every `send`, before it
    commits, as with `check`)."""
    if not items:
        return []
    rules = runtime if isinstance(runtime, PolicySettings) else runtime.settings.policy
    lock_persons(conn, [intent.person_id for intent, _, _ in items], now)
    facts = gather_many(conn, rules, items, now)
    verdicts = []
    for (intent, _, _), fact in zip(items, facts, strict=True):
        verdict = decide(intent, fact, rules, now)
        if verdict.outcome == "send" and intent.message_class not in _ignored(rules):
            assert isinstance(fact.recent, list)
            fact.recent.append((now, intent.channel))  # shared by the person's later sends in the batch
        verdicts.append(verdict)
    rows = [
        {
            "key": i.key,
            "person_id": i.person_id,
            "channel": i.channel,
            "message_class": i.message_class,
            "journey": i.journey,
            "outcome": v.outcome,
            "reason": v.reason[:1000],
            "retry_at": v.retry_at,
            "at": now,
        }
        for (i, _, _), v in zip(items, verdicts, strict=True)
    ]
    if conn.dialect.name == "postgresql":  # one statement, not one per row (storage/ops/unnest.py)
        conn.execute(_RECORD_UNNEST, unnest_params(_DECISION_COLUMNS, rows))
    else:
        conn.execute(_RECORD, rows)
    return verdicts


def _ignored(rules: PolicySettings) -> set[str]:
    return {name for name, rule in rules.classes if rule.capped == "ignore"}


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


__all__ = [
    "Decision",
    "check",
    "check_many",
    "check_with",
    "decisions",
    "gather",
    "gather_many",
    "lock_person",
    "lock_persons",
    "record",
    "with_stated_consent",
]
