"""`resolve`: stitch the identifiers of the event log into persons, incrementally.

Each event contributes one observation: its `anonymous_id`, `user_id`, `traits.email/phone/
loyalty_card/customer_number` (and the same in `context.traits`), `context.device.id` and every
`context.externalIds` entry whose `type` is a known kind. A `user_id` that is the event's own
customer number (the offline importers map `customer_number` onto `userId`) counts as that
customer number; the raw user id is still listed in `identities`.

The graph's state lives next to the log, in `<warehouse>/identity_state/<table>.parquet` (see
`identity.graph.Stitcher.state`): the next run reads only events whose `message_id` it has not seen
and extends the graph. The result is written to the warehouse dataset `identities`
(`kind, value, person_id`): every identifier, every raw `anonymous_id` and `user_id` of the events
(a person of their own when nothing links them; blocked values get no person), and the hash of each
normalised value for export is `identity.graph.hashed`.
"""

from __future__ import annotations

import csv
import posixpath
import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console

from omniweave.errors import ConfigError, InputError
from omniweave.events import spec
from omniweave.identity.graph import (
    DEFAULT_BLOCKED,
    DEFAULT_LIMITS,
    KINDS,
    IdentifierError,
    Observation,
    Rules,
    Stitcher,
    hashed,
    is_blocked,
    normalize,
)
from omniweave.identity.service.matching import (
    DEFAULT_THRESHOLD,
    ScoredPair,
    find_fields,
    prepare,
    score_pairs,
)
from omniweave.runtime import Runtime
from omniweave.settings import IdentitySettings

STATE_DATASET = "identity_state"
STATE_TABLES = ("observations", "nodes", "founders", "links", "refusals", "splits", "history", "meta")
IDENTITIES_SCHEMA = pa.schema(
    [("kind", pa.string()), ("value", pa.string()), ("person_id", pa.string()), ("value_sha256", pa.string())]
)
HASHED_KINDS = frozenset({"email", "phone"})
"""Kinds whose normalised value is also kept as a SHA-256 hex digest (`value_sha256`) for exports."""
TRAIT_KINDS = ("email", "phone", "loyalty_card", "customer_number")
COUPON_KIND = spec.COUPON_CODE_KIND
"""Personal coupon codes (`properties.coupon_code` when issued, `properties.coupon` when redeemed) link
the person a coupon was sent to with the one who used it; a code seen with several user ids or
e-mails (a campaign-wide code) is demoted by the share limits."""

_EXTRACT_SQL = """
SELECT message_id, ts, user_id, anonymous_id,
  {traits},
  CASE WHEN has_device THEN json_extract_string(context, '$.device.id') END AS device_id,
  CASE WHEN has_external THEN CAST(json_extract(context, '$.externalIds') AS VARCHAR) END AS external_ids,
  CASE WHEN has_coupon THEN json_extract_string(properties, '$.coupon_code') END AS p_coupon_code,
  CASE WHEN has_coupon THEN json_extract_string(properties, '$.coupon') END AS p_coupon
FROM (SELECT message_id, strftime(timestamp, '%Y-%m-%dT%H:%M:%S.%fZ') AS ts, user_id, anonymous_id, event,
        traits, context, properties, traits IS NOT NULL AND traits <> '{{}}' AS has_traits,
        contains(context, '"traits"') AS has_context_traits, contains(context, '"device"') AS has_device,
        contains(context, '"externalIds"') AS has_external, contains(properties, '"coupon') AS has_coupon
      FROM events) WHERE coalesce(event, '') NOT IN ({internal})
""".replace("{internal}", ", ".join(f"'{name}'" for name in spec.INTERNAL_EVENTS))
# (segment changes are omniweave's own bookkeeping, not identity evidence.) Each JSON path is parsed only in the
# events whose text names its key (a substring test is a fraction of a parse): 30 M events, most of them without
# traits, a device or a coupon, spend about 40 % less time here than with every path parsed in every event.


_PERSONAL = {
    "first_name": ("first_name", "firstName"),
    "last_name": ("last_name", "lastName"),
    "postcode": ("postcode", "postalCode"),
    "birthday": ("birthday", "birth_date"),
}
_PERSONAL_SQL = """
SELECT arg_max(message_id, ts) AS message_id, max(ts) AS ts, {columns} FROM (
SELECT message_id, strftime(timestamp, '%Y-%m-%dT%H:%M:%S.%fZ') AS ts, user_id, anonymous_id,
  {traits},
  {personal},
  json_extract_string(context, '$.device.id') AS device_id,
  CAST(json_extract(context, '$.externalIds') AS VARCHAR) AS external_ids,
  NULL::VARCHAR AS p_coupon_code, NULL::VARCHAR AS p_coupon
FROM events
WHERE CASE WHEN (traits IS NOT NULL AND traits <> '{{}}') OR contains(context, '"traits"') THEN ({any_personal})
      ELSE false END
) GROUP BY {columns}
"""
# (one row per distinct raw record, its latest event: the same records as every event, fewer rows into Python.
# Personal traits are in `traits` or `context.traits`: only events that have either are parsed, 16 paths each;
# on the bench's log that is 4 times less work than parsing every event.)
PROBABILISTIC_KINDS = frozenset({"user_id", "email", "phone", "loyalty_card", "customer_number"})
"""Identifiers a probabilistic link may join: a person's durable keys, never a device or a browser."""


@dataclass
class ResolveSummary:
    """What one `resolve` run did."""

    events: int = 0  # new events read
    observations: int = 0  # events in the graph, all runs
    identifiers: int = 0
    persons: int = 0
    merges: int = 0
    refused: int = 0
    demoted: list[tuple[str, str]] = field(default_factory=list)
    blocked: Counter[str] = field(default_factory=Counter)  # kind → blocked values seen this run
    invalid: Counter[str] = field(default_factory=Counter)  # kind → values that are not identifiers
    recomputed: bool = False
    incremental: bool = False  # the array path's daily increment (identity.service.increment) took the events
    probabilistic_links: int = 0  # links above the threshold offered to the graph (this run)
    seconds: float = 0.0

    def describe(self) -> str:
        return (
            f"{self.events:,} new events → {self.persons:,} persons from {self.identifiers:,} identifiers; "
            f"{self.merges:,} merges, {self.refused:,} links refused by the rules, "
            f"{len(self.demoted)} identifiers demoted, blocked {sum(self.blocked.values()):,}, "
            f"invalid {sum(self.invalid.values()):,}, {self.probabilistic_links:,} probabilistic links "
            f"({self.seconds:.1f} s)"
        )


def rules_from_settings(identity: IdentitySettings, default_region: str = "GB") -> Rules:
    """The identity rules of a parsed `[identity]` section (`settings.identity`): the built-in kinds with the
    custom `kinds` ranked after the durable ones and before device and anonymous ids, then personal coupon
    codes; `limits` and `share_limits` over the defaults; `blocked` values added to the default ones."""
    priorities = (*KINDS[:-2], *identity.kinds, KINDS[-2], COUPON_KIND, KINDS[-1])
    return Rules(
        priorities=priorities,
        limits={**DEFAULT_LIMITS, **dict(identity.limits)},
        share_limits={**Rules().share_limits, **dict(identity.share_limits)},
        blocked=DEFAULT_BLOCKED | {v.strip().lower() for v in identity.blocked},
        default_region=default_region,
        customer_number_prefix=identity.customer_number_prefix,
    )


def rules_from_config(section: Mapping[str, Any], default_region: str = "GB", where: str = "[identity]") -> Rules:
    """Rules from an `[identity]` table given as a dict (the settings parse the config file's own table);
    a ConfigError lists every problem of the table."""
    problems: list[str] = []
    identity = IdentitySettings.parse(section, where, problems)
    if problems:
        raise ConfigError("\n".join(problems))
    return rules_from_settings(identity, default_region)


def default_rules(runtime: Runtime) -> Rules:
    """The rules of the settings' `[identity]` section (the built-in kinds plus personal coupon codes and
    the defaults when there is none), with the settings' default phone region. The codes of static coupon
    pools (one code for everyone) are blocked values: they never link anybody."""
    rules = rules_from_settings(runtime.settings.identity, runtime.settings.default_region)
    statics = _static_coupon_codes(runtime)
    return replace(rules, blocked=rules.blocked | statics) if statics else rules


def _static_coupon_codes(runtime: Runtime) -> frozenset[str]:
    """Static coupon codes as `is_blocked` compares values (lower case), as written and without separators."""
    import sqlalchemy as sa

    from omniweave.storage.ops.tables.reach import coupon_pools

    with runtime.store.engine.connect() as conn:
        rows = conn.execute(sa.select(coupon_pools.c.static_code).where(coupon_pools.c.kind == "static")).all()
    codes = {str(row[0]).strip().lower() for row in rows if row[0]}
    return frozenset(codes | {re.sub(r"[\s\-._]+", "", code) for code in codes})


# --- state -------------------------------------------------------------------------------------


def load_stitcher(runtime: Runtime, rules: Rules | None = None) -> Stitcher:
    """The identity graph as the last `resolve` left it (empty before the first)."""
    rules = rules or default_rules(runtime)
    log = runtime.log
    folder = log.dataset_path(STATE_DATASET)
    if not log.fs.exists(posixpath.join(folder, "meta.parquet")):
        return Stitcher(rules)
    state: dict[str, list[dict[str, Any]]] = {}
    for name in STATE_TABLES:
        path = posixpath.join(folder, f"{name}.parquet")
        with log.fs.open(path, "rb") as fh:
            state[name] = pq.read_table(fh).to_pylist()
    for path in sorted(log.fs.glob(posixpath.join(folder, "observations-*.parquet"))):  # daily increments
        with log.fs.open(path, "rb") as fh:
            state["observations"] += pq.read_table(fh).to_pylist()
    return Stitcher.from_state(rules, state)


def save_stitcher(runtime: Runtime, stitcher: Stitcher) -> None:
    """Persist the graph (each table replaced by a rename; `meta` last, so a crash leaves the old state)."""
    log = runtime.log
    folder = log.dataset_path(STATE_DATASET)
    log.fs.makedirs(folder, exist_ok=True)
    state = stitcher.state()
    for name in STATE_TABLES:
        rows = state[name]
        table = pa.Table.from_pylist(rows) if rows else pa.table({"_empty": pa.array([], pa.string())})
        _write(log, posixpath.join(folder, f"{name}.parquet"), table)
    # every observation is in observations.parquet now; the array path's increment starts from a full build again
    for path in log.fs.glob(posixpath.join(folder, "observations-*.parquet")):
        log.fs.rm(path)
    for name in ("files", "demoted", "records", "cooc"):
        if log.fs.exists(posixpath.join(folder, f"{name}.parquet")):
            log.fs.rm(posixpath.join(folder, f"{name}.parquet"))


def _write(log: Any, final: str, table: pa.Table) -> None:
    log.replace_file(final, table)


# --- reading the events ------------------------------------------------------------------------


def _traits_sql(guarded: bool = True) -> str:
    """The trait identifiers' columns (of `_EXTRACT_SQL`, whose flags say which events have traits; or, not
    `guarded`, of any query over `events`)."""
    cols = []
    for kind in TRAIT_KINDS:
        t = f"json_extract_string(traits, '$.{kind}')"
        c = f"json_extract_string(context, '$.traits.{kind}')"
        if guarded:
            t, c = f"CASE WHEN has_traits THEN {t} END", f"CASE WHEN has_context_traits THEN {c} END"
        cols.append(f"{t} AS t_{kind}")
        cols.append(f"{c} AS c_{kind}")
    return ",\n  ".join(cols)


class _Extractor:
    """Raw identifiers of an event row → normalised identifiers, counting blocked and invalid values."""

    def __init__(self, rules: Rules, summary: ResolveSummary):
        self.rules, self.summary = rules, summary
        self.aliases: dict[str, str] = {}  # raw user_id that is a customer number → normalised number
        self._seen: dict[tuple[str, Any], tuple[str, str] | str] = {}  # (kind, raw) → identifier or why not

    def norm(self, kind: str, raw: Any) -> tuple[str, str] | None:
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        key = (kind, raw)
        known = self._seen.get(key)
        if known is None:
            try:
                value = normalize(kind, raw, self.rules.default_region, self.rules.customer_number_prefix)
            except IdentifierError:
                known = "invalid"
            else:
                known = "blocked" if is_blocked(kind, value, self.rules.blocked) else (kind, value)
            self._seen[key] = known
        if known == "invalid":
            self.summary.invalid[kind] += 1
            return None
        if known == "blocked":
            self.summary.blocked[kind] += 1
            return None
        return known  # type: ignore[return-value]

    def observation(self, row: dict[str, Any]) -> Observation:
        found: set[tuple[str, str]] = set()

        def add(kind: str, raw: Any) -> None:
            ident = self.norm(kind, raw)
            if ident:
                found.add(ident)

        for kind in TRAIT_KINDS:
            add(kind, row[f"t_{kind}"])
            add(kind, row[f"c_{kind}"])
        add("device_id", row["device_id"])
        if row["external_ids"]:
            try:
                entries = orjson.loads(row["external_ids"])
            except orjson.JSONDecodeError as exc:
                raise InputError(
                    f"context.externalIds is not JSON: {exc}", record=row["message_id"], field="context.externalIds"
                ) from exc
            if not isinstance(entries, list):
                raise InputError(
                    f"expected an array of {{id, type}}, got {type(entries).__name__}",
                    record=row["message_id"],
                    field="context.externalIds",
                )
            for entry in entries:
                if isinstance(entry, dict) and entry.get("type") in self.rules.priorities:
                    add(str(entry["type"]), entry.get("id"))
        if COUPON_KIND in self.rules.priorities:
            add(COUPON_KIND, row["p_coupon_code"])
            add(COUPON_KIND, row["p_coupon"])
        add("anonymous_id", row["anonymous_id"])
        user = row["user_id"]
        if user is not None and user.strip():
            number = self.norm("customer_number", user) if not is_blocked("user_id", user) else None
            if number and number in found:
                self.aliases[user] = number[1]
            else:
                add("user_id", user)
        return Observation(row["message_id"], row["ts"], tuple(sorted(found)))


def _query(runtime: Runtime, sql: str, seen: set[str] | None = None) -> list[dict[str, Any]]:
    """Rows of `sql` (DuckDB's dialect; the engine's storage layer transpiles it for Spark) over the `events`
    table on the Runtime's engine; with `seen`, only events whose message id is not in it (the anti-join
    runs in the engine: only new events become Python rows)."""
    warehouse = runtime.warehouse()
    warehouse.table("events")
    if not seen:
        return warehouse.rows(sql)
    ids = pa.table({"message_id": pa.array(sorted(seen), pa.string())})
    where = " AND " if " WHERE " in sql else " WHERE "
    sql += where + "message_id NOT IN (SELECT message_id FROM identity_seen)"
    return warehouse.rows(sql, identity_seen=ids)


def _new_events(runtime: Runtime, seen: set[str]) -> list[dict[str, Any]]:
    if not runtime.log.has_data("events"):
        return []
    return _query(runtime, _EXTRACT_SQL.format(traits=_traits_sql()), seen)


# --- the probabilistic tier ------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbabilisticLink:
    """Two identifiers the model holds to be one person, with its match probability and the fields
    that agreed."""

    a: tuple[str, str]
    b: tuple[str, str]
    probability: float
    explanation: str

    def observation(self, timestamp: str) -> Observation:
        """The link as an observation for the stitcher (its id names both identifiers and the reason)."""
        first, second = sorted((self.a, self.b))
        message = (
            f"probabilistic:{first[0]}:{first[1]}|{second[0]}:{second[1]} "
            f"match p={self.probability:.2f} ({self.explanation})"
        )
        return Observation(message, timestamp, (first, second))


def _personal_sql(guarded: bool = False) -> tuple[str, str]:
    """The SELECT list of the personal traits (traits, else context.traits) and the condition "has any";
    `guarded`: each path parsed only where `_EXTRACT_SQL`'s flags say the events have traits."""
    cols: list[str] = []
    present: list[str] = []
    for name, keys in _PERSONAL.items():
        sources = [f"json_extract_string({where}, '$.{key}')" for key in keys for where in ("traits", "context")]
        sources = [src.replace("(context, '$.", "(context, '$.traits.") for src in sources]
        if guarded:
            sources = [
                f"CASE WHEN {'has_context_traits' if '(context' in src else 'has_traits'} THEN {src} END"
                for src in sources
            ]
        cols.append(f"coalesce({', '.join(sources)}) AS {name}")
        present.extend(f"{src} IS NOT NULL" for src in sources)
    return ",\n  ".join(cols), " OR ".join(present)


RECORD_COLUMNS = (
    "user_id",
    "anonymous_id",
    *(f"{w}_{k}" for k in TRAIT_KINDS for w in "tc"),
    *_PERSONAL,
    "device_id",
    "external_ids",
    "p_coupon_code",
    "p_coupon",
)
"""The columns of a raw identity record (after its `message_id` and `ts`): its raw identifiers and personal traits."""
RECORDS_SCHEMA = pa.schema([(c, pa.string()) for c in ("message_id", "ts", *RECORD_COLUMNS)])


def record_table(runtime: Runtime, files: list[str] | None = None) -> pa.Table:
    """One row per distinct raw record (personal traits and raw identifiers) with its latest event, among the
    events that carry a name, postcode or birthday: of the whole log, or (`files`) of these event files only.

    Grouped this way, the records of two sets of events merge by grouping again (`merge_records`): the daily
    increment keeps the log's records in its state and reads only the new day's files."""
    if not runtime.log.has_data("events") or files == []:
        return RECORDS_SCHEMA.empty_table()
    personal, any_personal = _personal_sql()
    sql = _PERSONAL_SQL.format(
        traits=_traits_sql(guarded=False),
        personal=personal,
        any_personal=any_personal,
        columns=", ".join(RECORD_COLUMNS),
    )
    warehouse = runtime.warehouse()
    if files is None:
        warehouse.table("events")
    else:
        warehouse.con.create_view("identity_record_events", warehouse.files_table("events", files), overwrite=True)
        sql = sql.replace("FROM events", "FROM identity_record_events")
    batches = [b.cast(RECORDS_SCHEMA) for b in warehouse.engine.batches(warehouse.con, sql)]
    return pa.Table.from_batches(batches, RECORDS_SCHEMA) if batches else RECORDS_SCHEMA.empty_table()


def extract_with_records_sql() -> str:
    """`_EXTRACT_SQL` that also yields the raw identity records of `record_table` in the same scan of the log:
    the personal traits as columns, the flag `internal` (omniweave's own events: not identity evidence, but
    `record_table` reads them) and those events too when they have traits. `records_from_rows` groups them."""
    personal, _ = _personal_sql(guarded=True)
    sql = _EXTRACT_SQL.format(traits=_traits_sql())
    internal = ", ".join(f"'{name}'" for name in spec.INTERNAL_EVENTS)
    condition = f"coalesce(event, '') NOT IN ({internal})"
    assert sql.count(condition) == 1 and sql.count("FROM (SELECT") == 1
    sql = sql.replace(condition, f"({condition} OR has_traits OR has_context_traits)")
    sql = sql.replace(
        "\nFROM (SELECT", f",\n  {personal},\n  {condition.replace('NOT IN', 'IN')} AS internal\nFROM (SELECT"
    )
    return sql


def records_from_rows(rows: pa.Table) -> pa.Table:
    """`record_table` from event rows of `extract_with_records_sql` that have a name, postcode or birthday."""
    import duckdb

    columns = ", ".join(RECORD_COLUMNS)
    con = duckdb.connect()
    try:
        con.register("record_rows", rows)
        grouped: pa.Table = con.sql(
            f"SELECT arg_max(message_id, ts) AS message_id, max(ts) AS ts, {columns} FROM record_rows GROUP BY {columns}"
        ).to_arrow_table()
    finally:
        con.close()
    return grouped.cast(RECORDS_SCHEMA)


def merge_records(saved: str, new: pa.Table) -> pa.Table:
    """The records of a saved record table (a local Parquet file of `record_table`'s rows) and of `new`, as
    `record_table` gives them over both sets of events (each distinct record once, with its latest event)."""
    import duckdb

    columns = ", ".join(RECORD_COLUMNS)
    con = duckdb.connect()
    try:
        con.register("new_records", new)
        merged: pa.Table = con.sql(
            f"""SELECT arg_max(message_id, ts) AS message_id, max(ts) AS ts, {columns} FROM (
                SELECT message_id, ts, {columns} FROM read_parquet('{saved}')
                UNION ALL SELECT message_id, ts, {columns} FROM new_records) GROUP BY {columns}"""
        ).to_arrow_table()
    finally:
        con.close()
    return merged.cast(RECORDS_SCHEMA)


def identity_records(
    runtime: Runtime, rules: Rules, raw: pa.Table | None = None
) -> tuple[list[dict[str, Any]], list[Observation]]:
    """One record per distinct (personal traits, identifiers) among events that carry a name, postcode or
    birthday (identify calls, loyalty sign-ups, call-centre and mailing records), with its observation.

    `raw`: the raw records (`record_table`) when the caller has them already; else they are read from the log."""
    rows = (record_table(runtime) if raw is None else raw).to_pylist()
    extractor = _Extractor(rules, ResolveSummary())
    records: dict[tuple[Any, ...], tuple[dict[str, Any], Observation]] = {}
    for row in rows:
        obs = extractor.observation(row)
        usable = tuple(i for i in obs.identifiers if i[0] in PROBABILISTIC_KINDS)
        if not usable:
            continue
        email = next((v for k, v in usable if k == "email"), None)
        phone = next((v for k, v in usable if k == "phone"), None)
        record = {
            "first_name": row["first_name"],
            "last_name": row["last_name"],
            "postcode": row["postcode"],
            "birth_date": row["birthday"],
            "email": email,
            "phone": phone,
        }
        key = (*record.values(), usable)
        if key not in records or row["ts"] > records[key][1].key[0]:
            records[key] = (record, Observation(obs.message_id, row["ts"], usable))
    ordered = sorted(records.values(), key=lambda r: r[1].key)
    return [r for r, _ in ordered], [o for _, o in ordered]


def probabilistic_links(
    runtime: Runtime,
    threshold: float = DEFAULT_THRESHOLD,
    rules: Rules | None = None,
    raw: pa.Table | None = None,
) -> list[ProbabilisticLink]:
    """Links between identifiers of identity records the Fellegi–Sunter model matches at or above
    `threshold` (see `identity.service.matching`), each with its probability and the fields that agreed.

    Each pair of matched records gives one link between their highest-priority identifiers; records
    that already share an identifier give none (the deterministic pass has them). `raw`: the raw records
    (`record_table`) when the caller has them already (the array path keeps them in its state)."""
    rules = rules or default_rules(runtime)
    records, observations = identity_records(runtime, rules, raw)
    if len(records) < 2:
        return []
    table = pa.Table.from_pylist(records)
    prepared = prepare(table, find_fields(table.column_names), rules.default_region)
    pairs: list[ScoredPair] = score_pairs(prepared, threshold)
    links: dict[tuple[tuple[str, str], tuple[str, str]], ProbabilisticLink] = {}
    for pair in pairs:
        left, right = observations[pair.left].identifiers, observations[pair.right].identifiers
        if set(left) & set(right):
            continue
        a = min(left, key=lambda i: (rules.priority(i[0]), i[1]))
        b = min(right, key=lambda i: (rules.priority(i[0]), i[1]))
        key = (min(a, b), max(a, b))
        if key not in links or links[key].probability < pair.probability:
            links[key] = ProbabilisticLink(key[0], key[1], pair.probability, pair.explanation())
    return sorted(links.values(), key=lambda link: (link.a, link.b))


# --- resolve -------------------------------------------------------------------------------------


def resolve(
    runtime: Runtime,
    console: Console | None = None,
    rules: Rules | None = None,
    probabilistic: bool = True,
    threshold: float = DEFAULT_THRESHOLD,
    method: str = "auto",
) -> ResolveSummary:
    """Extend the identity graph with the events not seen yet, save it, and rewrite `identities`.

    With `probabilistic`, the links of `probabilistic_links` at or above `threshold` then join the
    graph as observations of their own (subject to the same limits and splits as any other).
    The Runtime's engine (DuckDB or Spark) reads the events; the stitching and the model are the same.

    `method` "arrays" (`identity.service.bulk`) streams the events in record batches and stitches them
    with the vectorised components, under the `memory_limit` setting; "objects" walks Python objects
    (`identity.graph.Stitcher`), the reference the array path is tested against. Both give the same
    persons and save the same state, so either may continue the other's graph. "auto" (the default)
    takes the object path for a log smaller than `Stitcher.BULK_THRESHOLD` events — cheap there, and
    every merge is logged — and the array path otherwise; a warehouse on object storage takes the
    object path (the array path writes its state locally)."""
    if method not in ("auto", "arrays", "objects"):
        raise InputError(f"unknown resolve method {method!r}; expected 'auto', 'arrays' or 'objects'", field="method")
    if method == "auto":
        method = "arrays" if _event_count(runtime) >= Stitcher.BULK_THRESHOLD else "objects"
    if method == "arrays" and _local(runtime):
        return _resolve_arrays(runtime, console, rules, probabilistic, threshold)
    started = time.perf_counter()
    summary = ResolveSummary()
    stitcher = load_stitcher(runtime, rules)
    recomputations = stitcher.recomputations
    extractor = _Extractor(stitcher.rules, summary)
    rows = _new_events(runtime, set(stitcher.observations))
    summary.events = len(rows)
    if console:
        console.print(f"resolving identities: {len(rows):,} new events")
    stitcher.add(extractor.observation(row) for row in rows)
    if probabilistic and (rows or not any(m.startswith("probabilistic:") for m in stitcher.observations)):
        links = probabilistic_links(runtime, threshold, stitcher.rules)
        summary.probabilistic_links = len(links)
        if console:
            console.print(f"probabilistic matching: {len(links):,} links at p ≥ {threshold}")
        stamp = stitcher.last_key[0] if stitcher.last_key else "1970-01-01T00:00:00.000000Z"
        stitcher.add(link.observation(stamp) for link in links)
    summary.recomputed = stitcher.recomputations > recomputations
    save_stitcher(runtime, stitcher)
    write_identities(runtime, stitcher, _aliases(runtime, stitcher, extractor))
    persons = stitcher.persons()
    summary.observations = len(stitcher.observations)
    summary.identifiers = len(stitcher.parent)
    summary.persons = len(persons)
    summary.merges = len(stitcher.merge_log())
    summary.refused = len(stitcher.refusals)
    summary.demoted = sorted(stitcher.demoted)
    summary.seconds = time.perf_counter() - started
    if console:
        console.print(summary.describe())
        for kind, value in summary.demoted[:20]:
            console.print(f"  demoted {kind}:{value} (seen with {stitcher.demoted_report()[(kind, value)]})")
    return summary


def _event_count(runtime: Runtime) -> int:
    """Events in the log, from the Parquet footers (no data read)."""
    total = 0
    for path in runtime.log.files("events"):
        with runtime.log.fs.open(path, "rb") as fh:
            total += pq.ParquetFile(fh).metadata.num_rows
        if total >= Stitcher.BULK_THRESHOLD:
            break
    return total


def _local(runtime: Runtime) -> bool:
    fs = runtime.log.fs
    return (fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]) in ("file", "local")


def _resolve_arrays(
    runtime: Runtime, console: Console | None, rules: Rules | None, probabilistic: bool, threshold: float
) -> ResolveSummary:
    """`resolve` on the array path (`identity.service.bulk`): nothing of the event log in Python objects."""
    from omniweave.identity.service import bulk
    from omniweave.identity.service import increment as daily
    from omniweave.storage.engine import memory_guard

    started = time.perf_counter()
    summary = ResolveSummary()
    rules = rules or default_rules(runtime)
    files = runtime.log.files("events")
    with memory_guard("resolve", runtime.engine.memory_limit):
        walked = daily.run(runtime, rules, summary, console, files, probabilistic, threshold)
    if walked is not None:
        summary.incremental = True
        summary.seconds = time.perf_counter() - started
        if console:
            console.print(summary.describe())
        return summary
    summary = ResolveSummary()
    spill = bulk.Spill(runtime.settings.home)
    try:
        with memory_guard("resolve", runtime.engine.memory_limit):
            seen = bulk.saved_observations(runtime)
            # a first full build reads every event: the probabilistic tier's records come from the same scan
            extracted = bulk.extract(runtime, rules, summary, spill, seen, files, records=probabilistic and not seen)
            if console:
                console.print(f"resolving identities: {summary.events:,} new events")
            raw: pa.Table | None = None
            if probabilistic and (summary.events or not bulk.has_probabilistic(seen)):
                raw = extracted.record_table() if extracted.records is not None else record_table(runtime)
                links = probabilistic_links(runtime, threshold, rules, raw)
                summary.probabilistic_links = len(links)
                if console:
                    console.print(f"probabilistic matching: {len(links):,} links at p ≥ {threshold}")
                stamps = [t for t in (extracted.max_ts, bulk.last_timestamp(runtime)) if t]
                stamp = max(stamps) if stamps else "1970-01-01T00:00:00.000000Z"
                increment = [link.observation(stamp) for link in links]
            else:
                increment = []
            summary.recomputed = bool(summary.events or summary.probabilistic_links)
            sub = bulk.build(runtime, rules, spill, summary, console, increment)
            daily.write_records(runtime, raw, fresh=summary.events == 0)
            daily.write_files(runtime, files, rules)
    finally:
        spill.remove()
    summary.seconds = time.perf_counter() - started
    if console:
        console.print(summary.describe())
        report = sub.demoted_report()
        for kind, value in summary.demoted[:20]:
            seen_with = report.get((kind, value))
            console.print(f"  demoted {kind}:{value}" + (f" (seen with {seen_with})" if seen_with else ""))
    return summary


def _aliases(runtime: Runtime, stitcher: Stitcher, extractor: _Extractor) -> dict[str, str]:
    """Raw user ids that are customer numbers (all runs): read back from the last `identities`."""
    aliases: dict[str, str] = {}
    path = posixpath.join(runtime.log.dataset_path("identities"), "identities.parquet")
    if runtime.log.fs.exists(path):
        with runtime.log.fs.open(path, "rb") as fh:
            old = pq.read_table(fh).to_pylist()
        users = {v for (k, v) in stitcher.parent if k == "user_id"}
        for row in old:
            if row["kind"] == "user_id" and row["value"] not in users and row["person_id"] is not None:
                try:
                    number = normalize(
                        "customer_number", row["value"], customer_number_prefix=stitcher.rules.customer_number_prefix
                    )
                except IdentifierError:
                    continue
                if ("customer_number", number) in stitcher.parent:
                    aliases[row["value"]] = number
    aliases.update(extractor.aliases)
    return aliases


def write_identities(runtime: Runtime, stitcher: Stitcher, aliases: dict[str, str]) -> str:
    """Replace the `identities` dataset: (kind, value, person_id, value_sha256) for every identifier and raw
    user id; e-mails and phones also hashed (SHA-256 of the normalised value) for exports."""
    kinds, values, persons = [], [], []
    assigned = stitcher.assignments()
    for (kind, value), pid in sorted(assigned.items()):
        kinds.append(kind)
        values.append(value)
        persons.append(pid)
    for raw, number in sorted(aliases.items()):
        if ("user_id", raw) not in assigned:
            kinds.append("user_id")
            values.append(raw)
            persons.append(assigned[("customer_number", number)])
    digests = [hashed(v) if k in HASHED_KINDS else None for k, v in zip(kinds, values, strict=True)]
    table = pa.table(
        {"kind": kinds, "value": values, "person_id": persons, "value_sha256": digests}, schema=IDENTITIES_SCHEMA
    )
    log = runtime.log
    folder = log.dataset_path("identities")
    log.fs.makedirs(folder, exist_ok=True)
    final = posixpath.join(folder, "identities.parquet")
    _write(log, final, table)
    return final


# --- evaluation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """Pairwise precision and recall of who-is-who against a ground truth.

    `recall` counts every pair of a person's identifiers; `recall_identifiable` only pairs of
    *identifiable* identifiers: ones that some event carries together with another identifier (not a
    demoted one, not an importer's made-up `offline:` anonymous id) or with personal traits (name,
    postcode, birth date). An identifier the data never ties to anything — a browser that never logs
    in, a phone's Wi-Fi address seen alone — cannot be resolved by any method; it is counted apart."""

    precision: float
    recall: float
    identifiers: int
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int
    unknown: int  # ground-truth identifiers not in the graph (each counted as a person of its own)
    recall_identifiable: float = 1.0
    identifiable: int = 0
    identifiable_pairs: int = 0

    def describe(self) -> str:
        return (
            f"identity vs ground truth: pairwise precision {self.precision:.4f}, recall "
            f"{self.recall_identifiable:.4f} over the {self.identifiable:,} identifiable identifiers "
            f"({self.identifiable_pairs:,} true pairs); recall {self.recall:.4f} over all {self.identifiers:,} "
            f"({self.identifiers - self.identifiable:,} never tied to anything in the data, "
            f"{self.unknown:,} not in the graph)"
        )


def identifiable(runtime: Runtime, stitcher: Stitcher) -> set[tuple[str, str]]:
    """Identifiers some event ties to something: another identifier (not demoted, not an importer's
    `offline:` anonymous id) or personal traits. See `Evaluation`."""
    found: set[tuple[str, str]] = set()
    for obs in stitcher.observations.values():
        if obs.message_id.startswith("probabilistic:"):
            continue
        real = [
            i
            for i in obs.identifiers
            if i not in stitcher.demoted and not (i[0] == "anonymous_id" and i[1].startswith("offline:"))
        ]
        if len(real) > 1:
            found.update(real)
    for obs in identity_records(runtime, stitcher.rules)[1]:
        found.update(obs.identifiers)
    return found


def evaluate_against_ground_truth(
    runtime: Runtime, folder: str | Path, rules: Rules | None = None, kinds: tuple[str, ...] = KINDS
) -> Evaluation:
    """Compare `identities` with `<folder>/ground_truth/identities.csv` (kind, normalized, raw, person_id).

    Ground-truth rows are normalised by our own rules from their raw form; only `kinds` count (by
    default the seven built-in kinds: not coupon codes or name+postcode), rows of nobody
    (placeholders) are left out.
    """
    stitcher = load_stitcher(runtime, rules)
    rules = stitcher.rules
    assigned = stitcher.assignments()
    path = Path(folder) / "ground_truth" / "identities.csv"
    if not path.is_file():
        path = Path(folder) / "identities.csv"
    if not path.is_file():
        raise InputError(f"no ground truth at {path}", field="folder")
    items: dict[tuple[str, str], str] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh), start=2):
            missing = {"kind", "raw", "person_id"} - set(row)
            if missing:
                raise InputError(
                    f"expected columns kind, normalized, raw, person_id; missing {sorted(missing)}", record=i
                )
            kind = row["kind"]
            if not row["person_id"] or kind not in kinds:
                continue
            try:
                value = normalize(kind, row["raw"], rules.default_region, rules.customer_number_prefix)
            except IdentifierError:
                value = "invalid:" + row["raw"]
            items[(kind, value)] = row["person_id"]
    tied = identifiable(runtime, stitcher)

    def count(idents: dict[tuple[str, str], str]) -> tuple[int, int, int, int]:
        true_sizes: Counter[str] = Counter()
        pred_sizes: Counter[str] = Counter()
        cells: Counter[tuple[str, str]] = Counter()
        unknown = 0
        for ident, truth in idents.items():
            pred = assigned.get(ident)
            if pred is None:
                unknown += 1
                pred = f"unknown:{ident}"
            true_sizes[truth] += 1
            pred_sizes[pred] += 1
            cells[(truth, pred)] += 1
        return pairs(cells), pairs(true_sizes), pairs(pred_sizes), unknown

    def pairs(sizes: Counter[Any]) -> int:
        return sum(n * (n - 1) // 2 for n in sizes.values())

    correct, true_pairs, predicted, unknown = count(items)
    known = {i: t for i, t in items.items() if i in tied}
    k_correct, k_true, _, _ = count(known)
    return Evaluation(
        precision=correct / predicted if predicted else 1.0,
        recall=correct / true_pairs if true_pairs else 1.0,
        identifiers=len(items),
        true_pairs=true_pairs,
        predicted_pairs=predicted,
        correct_pairs=correct,
        unknown=unknown,
        recall_identifiable=k_correct / k_true if k_true else 1.0,
        identifiable=len(known),
        identifiable_pairs=k_true,
    )
