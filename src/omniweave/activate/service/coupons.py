"""Coupon pools, issuing and redemption: the bridge from a message to a till and back.

- `create_pool`: a static pool (one code for everyone: a campaign's offer code, never used as
  identity) or a unique pool (codes made per person by `activate.coupons`: length, prefix,
  validity, campaign).
- `issue`: one unique code to one person for one send, recorded with the person, the send's ledger
  key, channel, campaign, message name and expiry. Idempotent per (pool, send key): a retried send
  gets the same code back.
- `issue_bulk`: many unassigned codes at once (leaflets, packaging), inserted in batches; a code
  that is already taken is drawn again, so codes never collide.
- `redeem_from_log`: reads `Order Completed` and `Coupon Applied` events (the till importer, the
  coupons importer, an online shop), marks each issued code redeemed once (when, where, by whom),
  flags it `shared` when the redeemer is not the recipient, and emits a `Coupon Redeemed` event
  for the redeemer, one millisecond before the redemption, carrying the issuing message's channel,
  campaign, message name and send key: attribution counts it as a touch of that channel.

Docs: docs/coupons.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from omniweave.activate.coupons import (
    check_length,
    check_prefix,
    format_code,
    is_valid_code,
    new_code,
    new_codes,
    normalize_code,
)
from omniweave.collect.emit import emit
from omniweave.errors import InputError
from omniweave.events import spec
from omniweave.events.normalize import deterministic_message_id
from omniweave.identity.persons import with_person
from omniweave.runtime import Runtime
from omniweave.storage.ops.tables.reach import coupon_pools, coupons

SOURCE = "omniweave-coupons"
"""The internal source `Coupon Redeemed` events are emitted under."""
REDEMPTION_EVENTS = (spec.ORDER_COMPLETED, spec.COUPON_APPLIED)
CODE_PROPERTIES = ("coupon", "coupon_id", "coupon_code", "coupon_name")
"""Properties of a redemption event that may hold a code (`coupons` may hold a list of them)."""
KINDS = ("static", "unique")
BATCH = 10_000
MAX_DRAWS = 20


@dataclass(frozen=True)
class Pool:
    """A coupon pool as the store holds it."""

    name: str
    kind: str
    static_code: str | None
    campaign: str | None
    code_length: int
    prefix: str | None
    valid_days: int
    description: str | None
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Coupon:
    """One issued code and what happened to it."""

    code: str
    pool: str
    person_id: str | None
    send_key: str | None
    channel: str | None
    campaign: str | None
    message_name: str | None
    issued_at: float
    expires_at: float | None
    redeemed_at: float | None = None
    redeemed_by: str | None = None
    redeemed_via: str | None = None
    redemption_event: str | None = None
    shared: bool = False

    @property
    def display(self) -> str:
        """The code grouped for reading (`ABCD-EFGH-JK7`); a static code as it was written."""
        return format_code(self.code) if is_valid_code(self.code) else self.code

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "display": self.display}


@dataclass(frozen=True)
class BulkIssue:
    """What `issue_bulk` did."""

    pool: str
    issued: int
    redrawn: int  # codes drawn again because they were taken (in the store or twice in one draw)
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Redemptions:
    """What one `redeem_from_log` run did."""

    events: int = 0  # redemption events read that carried a code
    redeemed: int = 0  # codes marked redeemed by this run
    shared: int = 0  # of those, redeemed by someone other than the recipient
    already: int = 0  # codes seen again after their first redemption
    static: int = 0  # uses of static codes (counted, never identity, no row to mark)
    unknown: int = 0  # codes that are not ours
    expired: int = 0  # codes redeemed after their expiry (still marked; the till decided)
    emitted: int = 0  # Coupon Redeemed events that were new to the inbox
    codes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"{self.events:,} redemption events with a code: {self.redeemed:,} codes redeemed "
            f"({self.shared:,} shared, {self.expired:,} after expiry), {self.already:,} already redeemed, "
            f"{self.static:,} static, {self.unknown:,} unknown; {self.emitted:,} Coupon Redeemed events emitted"
        )


# --- pools ------------------------------------------------------------------------------------------------
def create_pool(
    runtime: Runtime,
    name: str,
    *,
    kind: str = "unique",
    static_code: str | None = None,
    length: int = 10,
    prefix: str = "",
    valid_days: int = 30,
    campaign: str | None = None,
    description: str | None = None,
) -> Pool:
    """Create a pool: `unique` (codes made per person: `length` random characters after `prefix`, valid
    `valid_days` days from issue, 0 = no expiry) or `static` (`static_code` for everyone).

    InputError (naming the field) for a bad name, kind, length, prefix or validity, or a name in use.
    """
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InputError(f"pool name {name!r}: expected 1 to 100 characters", field="name")
    if kind not in KINDS:
        raise InputError(f"got kind {kind!r}; expected static or unique", field="kind")
    if isinstance(valid_days, bool) or not isinstance(valid_days, int) or not 0 <= valid_days <= 3660:
        raise InputError(f"got {valid_days!r}; expected whole days from 0 (no expiry) to 3660", field="valid_days")
    code: str | None = None
    if kind == "static":
        code = (static_code or "").strip()
        if not code or len(code) > 100 or any(ord(char) > 127 or char.isspace() for char in code):
            raise InputError(
                f"static code {static_code!r}: expected 1 to 100 printable ASCII characters without spaces",
                field="static_code",
            )
        code = code.upper()
        length, prefix = len(code), ""
    else:
        if static_code:
            raise InputError("a unique pool makes its own codes; give static_code only with kind static", field="kind")
        check_length(length)
        prefix = check_prefix(prefix)
    pool = Pool(name, kind, code, campaign, length, prefix or None, valid_days, description, time.time())
    with runtime.store.engine.begin() as conn:
        if conn.execute(sa.select(coupon_pools.c.name).where(coupon_pools.c.name == name)).first():
            raise InputError(f"a pool named {name!r} exists already", field="name")
        conn.execute(coupon_pools.insert().values(**pool.to_dict()))
    return pool


def get_pool(runtime: Runtime, name: str) -> Pool:
    """The pool `name`; InputError naming the pools there are when it does not exist."""
    with runtime.store.engine.connect() as conn:
        row = conn.execute(sa.select(coupon_pools).where(coupon_pools.c.name == name)).mappings().first()
        if row is None:
            names = [r[0] for r in conn.execute(sa.select(coupon_pools.c.name).order_by(coupon_pools.c.name))]
    if row is None:
        known = ", ".join(names) if names else "none yet (omniweave coupons pool create)"
        raise InputError(f"no coupon pool {name!r}; pools: {known}", field="pool")
    return Pool(**row)


def list_pools(runtime: Runtime) -> list[Pool]:
    """Every pool, by name."""
    with runtime.store.engine.connect() as conn:
        rows = conn.execute(sa.select(coupon_pools).order_by(coupon_pools.c.name)).mappings().all()
    return [Pool(**row) for row in rows]


def static_codes(runtime: Runtime) -> frozenset[str]:
    """The normalised codes of every static pool (identity never links persons by them)."""
    with runtime.store.engine.connect() as conn:
        rows = conn.execute(sa.select(coupon_pools.c.static_code).where(coupon_pools.c.kind == "static")).all()
    return frozenset(normalize_code(row[0]) for row in rows if row[0])


# --- issuing ----------------------------------------------------------------------------------------------
def issue(
    runtime: Runtime,
    pool: str,
    *,
    person_id: str | None = None,
    send_key: str | None = None,
    channel: str | None = None,
    campaign: str | None = None,
    message_name: str | None = None,
    now: float | None = None,
) -> Coupon:
    """The code for one person and one send from `pool`, recorded with who, through which send, channel,
    campaign and message, and until when. The same (pool, send key) always gets the same code, so a
    retried send does not hand out a second one. A static pool returns its code (nothing recorded).
    InputError naming the pools there are when `pool` does not exist."""
    get_pool(runtime, pool)
    with runtime.store.engine.begin() as conn:
        return issue_on(
            conn,
            pool,
            person_id=person_id,
            send_key=send_key,
            channel=channel,
            campaign=campaign,
            message_name=message_name,
            now=time.time() if now is None else now,
        )


def issue_on(
    conn: sa.Connection,
    pool: str,
    *,
    person_id: str | None,
    send_key: str | None,
    channel: str | None = None,
    campaign: str | None = None,
    message_name: str | None = None,
    now: float,
) -> Coupon:
    """`issue` on the caller's connection, in its transaction: a journey's send issues the code of its message's
    offer with the ledger row and the run's step, so a crash before the commit leaves no code behind and the
    retry draws one, and after it the same (pool, send key) finds its code again. InputError (field `pool`)
    when the pool does not exist or has no free code left. Without a send key every call draws a new code."""
    row = conn.execute(sa.select(coupon_pools).where(coupon_pools.c.name == pool)).mappings().first()
    if row is None:
        raise InputError(f"no coupon pool {pool!r} (omniweave coupons pool create {pool})", field="pool")
    found = Pool(**row)
    campaign = campaign or found.campaign
    if found.kind == "static":
        assert found.static_code is not None
        return Coupon(found.static_code, pool, person_id, send_key, channel, campaign, message_name, now, None)
    existing = _by_send_on(conn, pool, send_key) if send_key is not None else None
    if existing is not None:
        return existing
    values = {
        "pool": pool,
        "person_id": person_id,
        "send_key": send_key,
        "channel": channel,
        "campaign": campaign,
        "message_name": message_name,
        "issued_at": now,
        "expires_at": now + found.valid_days * 86400 if found.valid_days else None,
        "shared": False,
    }
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    for _ in range(MAX_DRAWS):  # a taken code is skipped by ON CONFLICT (no error, so the transaction lives on)
        code = new_code(found.code_length, found.prefix or "")
        if conn.execute(dialect.insert(coupons).on_conflict_do_nothing().values(code=code, **values)).rowcount:
            return Coupon(code=code, **values)  # type: ignore[arg-type]
        existing = _by_send_on(conn, pool, send_key) if send_key is not None else None  # the same send, concurrently
        if existing is not None:
            return existing
    raise InputError(
        f"pool {pool!r} is exhausted: no free code after {MAX_DRAWS} draws (create a pool with longer codes)",
        field="pool",
    )


def _by_send_on(conn: sa.Connection, pool: str, send_key: str) -> Coupon | None:
    row = (
        conn.execute(sa.select(coupons).where(coupons.c.pool == pool, coupons.c.send_key == send_key))
        .mappings()
        .first()
    )
    return Coupon(**row) if row is not None else None


def issue_bulk(
    runtime: Runtime,
    pool: str,
    count: int,
    *,
    campaign: str | None = None,
    progress: Callable[[int], None] | None = None,
    now: float | None = None,
) -> BulkIssue:
    """`count` unassigned codes from a unique `pool` (print runs, packaging), in batches of 10,000: each batch
    drops the codes already in the store or drawn twice and draws those again, so no code is ever issued twice.
    `progress(n)` is called after each batch with the codes written."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 10_000_000:
        raise InputError(f"got count {count!r}; expected a whole number from 1 to 10,000,000", field="count")
    found = get_pool(runtime, pool)
    if found.kind != "unique":
        raise InputError(f"pool {pool!r} is static: it has one code for everyone, nothing to issue", field="pool")
    started = time.perf_counter()
    now = time.time() if now is None else now
    expires = now + found.valid_days * 86400 if found.valid_days else None
    campaign = campaign or found.campaign
    issued = redrawn = 0
    engine = runtime.store.engine
    insert = _bulk_insert_sql(engine)
    counts_rows = engine.dialect.name == "sqlite"
    while issued < count:
        want = min(BATCH, count - issued)
        drawn = set(new_codes(want, found.code_length, found.prefix or ""))
        rows = [(code, pool, campaign, now, expires, False) for code in drawn]
        with engine.begin() as conn:
            # sqlite3 counts the rows an executemany wrote; other drivers may not: count the pool around it
            before = None if counts_rows else _pool_size(conn, pool)
            written = conn.exec_driver_sql(insert, rows).rowcount  # type: ignore[arg-type]
            if before is not None:
                written = _pool_size(conn, pool) - before
        # codes drawn twice in this batch or already in the store were skipped by ON CONFLICT: draw again
        redrawn += want - written
        issued += written
        if progress is not None and written:
            progress(written)
    return BulkIssue(pool, issued, redrawn, time.perf_counter() - started)


def _bulk_insert_sql(engine: sa.Engine) -> str:
    """One INSERT of an unassigned code that skips a code already taken (SQLite and PostgreSQL both say
    `ON CONFLICT DO NOTHING`), in the driver's own parameter style: 100,000 rows go through the driver's
    executemany without SQLAlchemy's per-row bookkeeping."""
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    columns = "code, pool, campaign, issued_at, expires_at, shared"
    return f"INSERT INTO coupons ({columns}) VALUES ({', '.join([mark] * 6)}) ON CONFLICT DO NOTHING"


def _pool_size(conn: sa.Connection, pool: str) -> int:
    query = sa.select(sa.func.count()).select_from(coupons).where(coupons.c.pool == pool)
    return int(conn.execute(query).scalar_one())


def find(runtime: Runtime, code: str) -> Coupon | None:
    """The issued coupon for `code` as someone typed it (any case, spaces, dashes), or None."""
    normal = normalize_code(code)
    with runtime.store.engine.connect() as conn:
        row = conn.execute(sa.select(coupons).where(coupons.c.code == normal)).mappings().first()
    return Coupon(**row) if row is not None else None


def coupons_of(runtime: Runtime, person_ids: Iterable[str]) -> list[Coupon]:
    """The coupons issued to one person or redeemed by them, newest first (issued, then redeemed). Pass every
    id the person has had (the current one and those merged into it): a code keeps the id of its day."""
    ids = sorted({p for p in person_ids if p})
    if not ids:
        return []
    with runtime.store.engine.connect() as conn:
        rows = (
            conn.execute(sa.select(coupons).where(coupons.c.person_id.in_(ids) | coupons.c.redeemed_by.in_(ids)))
            .mappings()
            .all()
        )
    found = [Coupon(**row) for row in rows]
    return sorted(found, key=lambda c: (c.issued_at, c.redeemed_at or 0.0, c.code), reverse=True)


def pool_codes(runtime: Runtime, pool: str) -> list[str]:
    """Every code issued from `pool` (for a print run's file)."""
    with runtime.store.engine.connect() as conn:
        return [row[0] for row in conn.execute(sa.select(coupons.c.code).where(coupons.c.pool == pool))]


# --- redemption -------------------------------------------------------------------------------------------


def codes_of(properties: dict[str, Any]) -> list[str]:
    """The coupon codes an event's properties carry (`coupon`, `coupon_id`, `coupon_code`, `coupon_name`, and a
    `coupons` list), normalised, without repeats, in order."""
    found: list[str] = []
    values: list[Any] = [properties.get(name) for name in CODE_PROPERTIES]
    many = properties.get("coupons")
    if isinstance(many, list):
        values.extend(many)
    elif isinstance(many, str):
        values.extend(many.split(","))
    for value in values:
        if isinstance(value, str | int) and not isinstance(value, bool):
            code = normalize_code(str(value))
            if code and code not in found:
                found.append(code)
    return found


def _redemption_rows(runtime: Runtime, since: datetime | None = None) -> list[dict[str, Any]]:
    """Redemption events with the person each belongs to (through `identities` when resolved), oldest first; with
    `since`, those at or after it only, read from the day partitions from its day on."""
    warehouse = runtime.warehouse()
    if since is None:
        events = warehouse.table("events")
    else:
        events = warehouse.files_table("events", runtime.log.files_since("events", since))
        events = events.filter(events.timestamp >= since)
    # only events whose properties mention a coupon at all: orders without one never become Python rows
    events = events.filter(events.event.isin(REDEMPTION_EVENTS) & events.properties.contains('"coupon'))
    if runtime.log.has_data("identities"):
        events = with_person(events, warehouse.table("identities"), keep_unknown=True)
    else:
        events = events.mutate(person_id=events.user_id)
    columns = ["message_id", "timestamp", "event", "user_id", "anonymous_id", "channel", "properties", "person_id"]
    table = events.select(*columns).order_by(["timestamp", "message_id"])
    rows: list[dict[str, Any]] = table.to_pyarrow().to_pylist()
    return rows


def redeem_from_log(
    runtime: Runtime, *, progress: Callable[[int], None] | None = None, since: datetime | None = None
) -> Redemptions:
    """Mark the codes that came back in the event log redeemed and credit the messages that issued them.

    For each `Order Completed` / `Coupon Applied` event (oldest first) and each of our codes it carries
    that is not redeemed yet: the code gets the time, the way (`store` for the till, else the event's
    channel), the redeemer (the person the event resolves to, else its user id) and `shared` when that
    redeemer is known and is not the recipient; and a `Coupon Redeemed` event is emitted for the redeemer
    one millisecond before the redemption with the issuing message's `channel`, `campaign`,
    `message_name` and `send_key`, so attribution credits that message's channel and campaign.
    Running it again changes nothing (codes are redeemed once; the events have deterministic ids). With
    `since`, only the events at or after it are read (a daily run after an import of the day's receipts: the
    earlier ones were read by the run before).
    """
    summary = Redemptions()
    statics = static_codes(runtime)
    engine = runtime.store.engine
    out: list[dict[str, Any]] = []
    for row in _redemption_rows(runtime, since):
        properties = _properties(row["properties"])
        for code in codes_of(properties):
            summary.events += 1
            if code in statics:
                summary.static += 1
                continue
            coupon = _redeem(engine, code, row, summary)
            if coupon is not None:
                out.append(_redeemed_event(coupon, row, code))
        if progress is not None:
            progress(1)
    for start in range(0, len(out), 1000):
        summary.emitted += emit(runtime.store, SOURCE, out[start : start + 1000])
    return summary


def _properties(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _redeem(engine: sa.Engine, code: str, row: dict[str, Any], summary: Redemptions) -> Coupon | None:
    """Mark `code` redeemed by the event `row` (once: the update is guarded by `redeemed_at IS NULL`)."""
    with engine.begin() as conn:
        found = conn.execute(sa.select(coupons).where(coupons.c.code == code)).mappings().first()
        if found is None:
            summary.unknown += 1
            return None
        if found["redeemed_at"] is not None:
            if found["redemption_event"] != row["message_id"]:
                summary.already += 1
            return None
        at = _epoch(row["timestamp"])
        redeemer = row.get("person_id") or row.get("user_id")
        recipient = found["person_id"]
        shared = bool(redeemer and recipient and redeemer != recipient)
        via = _via(row)
        values = {
            "redeemed_at": at,
            "redeemed_by": redeemer,
            "redeemed_via": via,
            "redemption_event": row["message_id"],
            "shared": shared,
        }
        changed = conn.execute(
            coupons.update().where(coupons.c.code == code, coupons.c.redeemed_at.is_(None)).values(**values)
        ).rowcount
    if not changed:
        summary.already += 1
        return None
    summary.redeemed += 1
    summary.shared += shared
    summary.expired += bool(found["expires_at"] is not None and at > found["expires_at"])
    summary.codes.append(code)
    return Coupon(**{**found, **values})


def _via(row: dict[str, Any]) -> str:
    """Where a code was used: the coupons importer's `redeemed_channel` (store, web, app), else `store` for a
    till receipt, else the event's channel (an online shop's `web` or `app`)."""
    said = _properties(row["properties"]).get("redeemed_channel")
    if isinstance(said, str) and said.strip():
        return said.strip().lower()[:40]
    channel = str(row.get("channel") or "").lower()
    return "store" if channel in ("store", "", "other", "coupon") else channel[:40]


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return (value.replace(tzinfo=UTC) if value.tzinfo is None else value).timestamp()
    return float(value)


def _redeemed_event(coupon: Coupon, row: dict[str, Any], code: str) -> dict[str, Any]:
    """The `Coupon Redeemed` event for the redeemer, just before the redemption, in the issuing message's name."""
    moment = row["timestamp"]
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(float(moment), UTC)
    moment = (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment) - timedelta(milliseconds=1)
    properties: dict[str, Any] = {
        "coupon": coupon.display,
        "coupon_id": code,
        "pool": coupon.pool,
        "channel": coupon.channel or "coupon",
        "campaign": coupon.campaign,
        "message_name": coupon.message_name,
        "send_key": coupon.send_key,
        "person_id": coupon.redeemed_by,
        "recipient_person_id": coupon.person_id,
        "shared": coupon.shared,
        "redeemed_via": coupon.redeemed_via,
        "redemption_event": row["message_id"],
    }
    event: dict[str, Any] = {
        "type": "track",
        "event": spec.COUPON_REDEEMED,
        "messageId": deterministic_message_id(SOURCE, code, row["message_id"]),
        "timestamp": moment.isoformat().replace("+00:00", "Z"),
        "properties": {k: v for k, v in properties.items() if v is not None},
    }
    if row.get("user_id"):
        event["userId"] = row["user_id"]
    if row.get("anonymous_id"):
        event["anonymousId"] = row["anonymous_id"]
    if coupon.campaign:
        event["context"] = {"campaign": {"name": coupon.campaign, "medium": coupon.channel or "coupon"}}
    return event


def redeemed_codes(runtime: Runtime, codes: Iterable[str]) -> list[Coupon]:
    """The coupons of `codes` as the store holds them now (for reports and tests)."""
    wanted = [normalize_code(code) for code in codes]
    with runtime.store.engine.connect() as conn:
        rows = conn.execute(sa.select(coupons).where(coupons.c.code.in_(wanted))).mappings().all()
    return [Coupon(**row) for row in rows]
