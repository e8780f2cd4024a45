"""Privacy: the consent history, data-subject requests with a receipt per target, suppressed identifiers.

`consent_history`: one row per consent statement — who (`subject`: the SHA-256 digest of one of the
person's identifiers, `kind:value` normalised; never the plain value), which purpose, yes or no, where it
came from (`source`: event, import, channel, api) and its `reference` (a message id, a suppression, a
request), when it was stated (`stated_at`) and recorded. The unique key makes a re-read of the same
statement a no-op.

`privacy_requests`: one row per data-subject request (export, delete, suppress, unsuppress, retention):
its status (`pending`, `running`, `done`, `failed`), the person, and — only while it runs — the
identifiers it acts on (`work`, JSON), cleared when it is done so the store keeps no plain identifier of
a deleted person. `privacy_receipts`: what a request did to each target (removed, anonymised, written),
one row per (request, target); a re-run replaces it.

`privacy_blocked`: digests of identifiers whose events the collector refuses (a suppression or a
deletion). Collector processes read it through `IngestGuard` with a short cache, so a suppression takes
effect everywhere within `[privacy] blocklist_refresh_seconds` (≤ 60 s).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import sqlalchemy as sa

from omniweave.storage.ops.tables.base import metadata

consent_history = sa.Table(
    "consent_history",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("subject", sa.String(64), nullable=False),  # digest of "kind:value"
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("purpose", sa.String(40), nullable=False),
    sa.Column("granted", sa.Boolean, nullable=False),
    sa.Column("source", sa.String(20), nullable=False),  # event | import | channel | api
    sa.Column("reference", sa.String(200), nullable=False),
    sa.Column("stated_at", sa.Float, nullable=False),
    sa.Column("recorded_at", sa.Float, nullable=False),
    sa.UniqueConstraint("subject", "purpose", "source", "reference", name="consent_history_statement"),
    sa.Index("consent_history_subject", "subject", "purpose", "stated_at"),
    sqlite_autoincrement=True,
)

privacy_requests = sa.Table(
    "privacy_requests",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),  # export | delete | suppress | unsuppress | retention
    sa.Column("status", sa.String(20), nullable=False),  # pending | running | done | failed
    sa.Column("subject", sa.String(200), nullable=False),  # masked, as people may read it
    sa.Column("person_id", sa.String(64), nullable=True),
    sa.Column("work", sa.LargeBinary, nullable=True),  # JSON: what the request acts on, cleared when done
    sa.Column("error", sa.String(2000), nullable=True),
    sa.Column("requested_by", sa.String(200), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
)

privacy_receipts = sa.Table(
    "privacy_receipts",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("target", sa.String(300), primary_key=True),
    sa.Column("action", sa.String(40), nullable=False),  # removed | anonymised | rewritten | written | blocked | none
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("detail", sa.String(2000), nullable=True),
    sa.Column("at", sa.Float, nullable=False),
)

privacy_blocked = sa.Table(
    "privacy_blocked",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),  # identifier_digest(kind, value)
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


def identifier_digest(kind: str, value: str) -> str:
    """The SHA-256 hex digest of `kind:value` (value normalised by the caller): how privacy tables name a
    person's identifier without holding it."""
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def phone_digits(text: str) -> str:
    """The digits of a phone number after its country code or trunk prefix is dropped (the last 9 digits):
    what both `+44 7700 900123` and `07700900123` have in common, for the ingest check."""
    digits = "".join(ch for ch in text if ch.isdigit())
    return digits[-9:] if len(digits) >= 9 else digits


def event_identifiers(event: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(kind, value) of every identifier an event carries, lightly normalised (e-mails lower-cased, phones to
    `phone_digits`): user and anonymous ids, e-mail and phone in traits, context.traits and properties,
    the device id, loyalty card and customer number traits."""
    for key, kind in (("userId", "user_id"), ("anonymousId", "anonymous_id"), ("previousId", "user_id")):
        value = event.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            yield kind, str(value)
    context = event.get("context")
    places = [event.get("traits"), event.get("properties")]
    if isinstance(context, Mapping):
        places.append(context.get("traits"))
        device = context.get("device")
        if isinstance(device, Mapping) and isinstance(device.get("id"), str):
            yield "device_id", device["id"].strip().lower()
    for place in places:
        if not isinstance(place, Mapping):
            continue
        email = place.get("email")
        if isinstance(email, str) and email.strip():
            yield "email", email.strip().lower()
        phone = place.get("phone")
        if isinstance(phone, str | int) and not isinstance(phone, bool) and phone_digits(str(phone)):
            yield "phone_digits", phone_digits(str(phone))
        for key in ("loyalty_card", "customer_number"):
            code = place.get(key)
            if isinstance(code, str | int) and not isinstance(code, bool) and str(code).strip():
                yield key, "".join(str(code).split()).replace("-", "").upper()


def block_digest(kind: str, value: str) -> str | None:
    """The `privacy_blocked` digest of a resolved identifier (as `identities` holds it), spelled the way
    `event_identifiers` reads it from an event; None for a kind the collector does not check."""
    if kind == "phone":
        return identifier_digest("phone_digits", phone_digits(value))
    if kind in ("email", "device_id"):
        return identifier_digest(kind, value.lower())
    if kind in ("loyalty_card", "customer_number"):
        return identifier_digest(kind, "".join(value.split()).replace("-", "").upper())
    if kind in ("user_id", "anonymous_id"):
        return identifier_digest(kind, value)
    return None


def blocked_among(conn: sa.Connection, digests: Iterable[str]) -> set[str]:
    """Which of `digests` are in `privacy_blocked` (one query per 500)."""
    wanted = sorted(set(digests))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        found.update(
            conn.execute(sa.select(privacy_blocked.c.digest).where(privacy_blocked.c.digest.in_(part))).scalars()
        )
    return found


class BlockedIdentifiers:
    """The digests in `privacy_blocked`, re-read at most every `refresh_seconds` (a collector process asks
    for every event; a suppression written by another process is seen within that time)."""

    def __init__(self, engine: sa.Engine, refresh_seconds: float = 15.0, clock: Any = time.monotonic):
        self._engine = engine
        self._refresh = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._digests: frozenset[str] = frozenset()
        self._read_at: float | None = None

    def current(self) -> frozenset[str]:
        """The blocked digests, at most `refresh_seconds` old (the last good read if the store is away)."""
        now = self._clock()
        with self._lock:
            if self._read_at is None or now - self._read_at >= self._refresh:
                try:
                    with self._engine.connect() as conn:
                        self._digests = frozenset(conn.execute(sa.select(privacy_blocked.c.digest)).scalars())
                except sa.exc.SQLAlchemyError:
                    if self._read_at is None:
                        raise
                self._read_at = now
            return self._digests

    def refusal(self, event: Mapping[str, Any]) -> tuple[str, str] | None:
        """(field, reason) when the event carries a blocked identifier, else None."""
        blocked = self.current()
        if not blocked:
            return None
        for kind, value in event_identifiers(event):
            if identifier_digest(kind, value) in blocked:
                where = {"user_id": "userId", "anonymous_id": "anonymousId"}.get(kind, kind)
                return where, "refused: this identifier belongs to a person who asked not to be tracked"
        return None


_SPELLINGS = {"personalization": "personalisation", "marketing_email": "email", "e-mail": "email"}


def stated_purposes(event: Mapping[str, Any]) -> dict[str, bool]:
    """The purposes an event's `context.consent.categoryPreferences` states (purpose → yes/no), keys
    lower-cased, American spellings mapped (`Personalization` → `personalisation`)."""
    context = event.get("context")
    consent = context.get("consent") if isinstance(context, Mapping) else None
    chosen = consent.get("categoryPreferences") if isinstance(consent, Mapping) else None
    if not isinstance(chosen, Mapping):
        return {}
    out: dict[str, bool] = {}
    for key, value in chosen.items():
        name = str(key).strip().lower()
        if isinstance(value, bool):
            out[_SPELLINGS.get(name, name)] = value
    return out


def apply_collection_rules(event: dict[str, Any], rules: tuple[Any, ...]) -> list[str]:
    """Drop or hash (SHA-256 of the value's text) every field a `[[privacy.collection]]` rule (settings'
    `CollectionRule`) forbids for this event's stated consent; returns the fields changed."""
    if not rules:
        return []
    stated = stated_purposes(event)
    changed = []
    for rule in rules:
        said = stated.get(rule.purpose)
        if said is True or (said is None and rule.when == "denied"):
            continue
        *parents, leaf = rule.field.split(".")
        place: Any = event
        for name in parents:
            place = place.get(name) if isinstance(place, dict) else None
        if not isinstance(place, dict) or leaf not in place:
            continue
        if rule.action == "hash":
            place[leaf] = hashlib.sha256(str(place[leaf]).encode()).hexdigest()
        else:
            del place[leaf]
        changed.append(rule.field)
    return changed


class IngestGuard:
    """What the collector asks of every normalised event: the collection rules applied (the event is
    changed in place), then whether one of its identifiers is blocked (the item is refused)."""

    def __init__(self, engine: sa.Engine, privacy: Any):
        self.blocked = BlockedIdentifiers(engine, privacy.blocklist_refresh_seconds)
        self.rules = tuple(privacy.collection)

    def __call__(self, event: dict[str, Any]) -> tuple[str, str] | None:
        apply_collection_rules(event, self.rules)
        return self.blocked.refusal(event)


def refused_rows(table: Any, blocked: frozenset[str]) -> list[int]:
    """The rows of an `events` table (storage.eventlog.EVENT_SCHEMA, as an importer prepares it) that carry
    a blocked identifier: what the importers drop, as the collector refuses such events."""
    if not blocked or table.num_rows == 0:
        return []
    import orjson

    n = table.num_rows
    names = ("user_id", "anonymous_id", "context", "traits", "properties")
    cols = {k: table.column(k).to_pylist() if k in table.column_names else [None] * n for k in names}

    def doc(text: Any) -> Any:
        try:
            return orjson.loads(text) if text else None
        except orjson.JSONDecodeError:
            return None

    out = []
    for i in range(n):
        event = {
            "userId": cols["user_id"][i],
            "anonymousId": cols["anonymous_id"][i],
            "context": doc(cols["context"][i]),
            "traits": doc(cols["traits"][i]),
            "properties": doc(cols["properties"][i]),
        }
        if any(identifier_digest(kind, value) in blocked for kind, value in event_identifiers(event)):
            out.append(i)
    return out
