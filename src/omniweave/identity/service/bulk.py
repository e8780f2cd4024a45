"""The array path of `resolve`: the same persons as `identity.graph.Stitcher`, at a million customers.

The object path turns every event into a Python `Observation` and walks them one by one; at
30 M events that is tens of gigabytes of small objects. This path never holds the event log in Python:

1. **extract** — the engine (DuckDB or Spark, `Engine.batches`) runs the identifier query of
   `resolve` over the events not seen yet and streams the result in record batches; each batch is
   normalised with Arrow kernels (`identity.arrays.normalize_array`) into long rows
   `(ev, kind, value)`, each identifier once per event, and `(ev, message_id, timestamp)` per event, written
   to a spill folder as Parquet (`ev` numbers the events as they come: the graph joins on it, not on
   message ids, which are several times wider);
2. **graph** — a DuckDB connection under the `memory_limit` setting (spilling to disk) joins them with
   the observations of earlier runs (the saved state), ranks the observations in the canonical order
   (timestamp, message id), numbers the identifiers, finds the demoted ones (seen with too many user
   ids or e-mails: the share limits; their co-occurrences are saved for the daily increment), each
   observation's primary identifier and its links;
3. **stitch** — `identity.components.stitch_links` finds the components, their founders and the ones a
   per-kind limit (or a split) could cut; only those components' observations become Python objects,
   walked rule by rule by the `Stitcher` itself (refusals, merges and their log come from there);
4. **write** — nodes, founders, links (each linked pair once, with its first event), refusals, history
   (old person ids pointing at their survivors), the observations and `identities`, by DuckDB.

The result is the object path's bulk rebuild (the `Stitcher` docstring): same persons, same person
ids, same links, refusals and merge log; the state tables have the same columns, so `load_stitcher`
(`identity explain`, `identity split`) reads them as before. Every run re-derives the graph from all
observations in the engine, which is what the object path does for any late event anyway.
"""

from __future__ import annotations

import contextlib
import posixpath
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from omniweave.errors import InputError
from omniweave.identity.arrays import BLOCKED, INVALID, OK, _python_one, normalize_array
from omniweave.identity.components import NEVER, stitch_links
from omniweave.identity.graph import DEFAULT_BLOCKED, Identifier, Observation, Rules, Split, Stitcher, person_id_for
from omniweave.runtime import Runtime
from omniweave.storage.engine import memory_guard

BATCH_ROWS = 500_000
_PERSON_ID = "'P' || substr(sha256({k} || ':' || {v}), 1, 15)"
"""`identity.graph.person_id_for` in SQL."""


class Spill:
    """A folder of Parquet parts under <home>/spill, removed when done."""

    def __init__(self, home: str):
        self.path = Path(home) / "spill" / f"resolve-{uuid.uuid4().hex}"
        self.path.mkdir(parents=True)
        self.parts: dict[str, int] = Counter()

    def write(self, name: str, table: pa.Table) -> None:
        if table.num_rows:
            # read once, by the graph a minute later: plain pages, no compression and no dictionary of the
            # values cost a third of the CPU of lz4 and dictionaries, for about twice the bytes on disk
            path = self.path / f"{name}-{self.parts[name]:05d}.parquet"
            dictionary = [c for c in table.schema.names if pa.types.is_dictionary(table.schema.field(c).type)]
            pq.write_table(table, path, compression="none", use_dictionary=dictionary, write_statistics=False)
            self.parts[name] += 1

    def glob(self, name: str) -> str | None:
        return str(self.path / f"{name}-*.parquet") if self.parts[name] else None

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


DELTA_PREFIX = "observations-"
"""The observations of a daily increment (`identity.service.increment`), until the next full build."""


def saved_observations(runtime: Runtime) -> str | None:
    """The saved observations of the last `resolve` (None before the first): a file, or a glob over it and the
    increments' files."""
    files = observation_files(runtime)
    if not files:
        return None
    if len(files) == 1:
        return files[0]
    return posixpath.join(runtime.log.dataset_path("identity_state"), "observations*.parquet")


def observation_files(runtime: Runtime) -> list[str]:
    """The saved observations: `observations.parquet` and the increments' files since the last full build."""
    log = runtime.log
    folder = log.dataset_path("identity_state")
    base = posixpath.join(folder, "observations.parquet")
    found = [base] if log.fs.exists(base) and _has_rows(base) else []
    return found + sorted(log.fs.glob(posixpath.join(folder, f"{DELTA_PREFIX}*.parquet")))


def remove_deltas(runtime: Runtime) -> None:
    """Drop the increments' observation files (once `observations.parquet` holds every observation)."""
    folder = runtime.log.dataset_path("identity_state")
    for path in runtime.log.fs.glob(posixpath.join(folder, f"{DELTA_PREFIX}*.parquet")):
        runtime.log.fs.rm(path)


def has_probabilistic(observations: str | None) -> bool:
    """Whether the saved observations hold probabilistic links already."""
    if not observations:
        return False
    query = f"SELECT count(*) FROM read_parquet('{observations}') WHERE message_id LIKE 'probabilistic:%'"
    con = duckdb.connect()
    try:
        row = con.execute(query).fetchone()
    finally:
        con.close()
    return bool(row and row[0])


def last_timestamp(runtime: Runtime) -> str | None:
    """The timestamp of the last observation in the saved graph."""
    path = posixpath.join(runtime.log.dataset_path("identity_state"), "meta.parquet")
    if not runtime.log.fs.exists(path) or "last_timestamp" not in pq.read_schema(path).names:
        return None
    value = pq.read_table(path).column("last_timestamp")[0].as_py()
    return str(value) if value is not None else None


# --- 1. extract -----------------------------------------------------------------------------------


_IDS = pa.schema([("ev", pa.int64()), ("kind", pa.dictionary(pa.int32(), pa.string())), ("value", pa.string())])
"""The spilled identifier rows: the event's ordinal in this run's extraction (`msgs` spill: ev, message_id,
timestamp), the kind and the normalised value."""


class _Extract:
    """Record batches of the identifier query → long observation rows, aliases and counts."""

    def __init__(self, rules: Rules, summary: Any, spill: Spill, trait_kinds: tuple[str, ...], coupon_kind: str):
        self.rules, self.summary, self.spill = rules, summary, spill
        self.trait_kinds, self.coupon_kind = trait_kinds, coupon_kind
        self.cache: dict[tuple[str, str], tuple[str | None, int]] = {}
        self.max_ts: str | None = None
        self.extracted = 0  # events so far: the next one's ordinal
        self.records: list[pa.Table] | None = None  # event rows with personal traits (`extract(records=True)`)

    def record_table(self) -> pa.Table:
        """The raw identity records of the events read (`resolve.record_table` of the same events)."""
        from omniweave.identity.service.resolve import RECORDS_SCHEMA, records_from_rows

        if not self.records:
            return RECORDS_SCHEMA.empty_table()
        return records_from_rows(pa.concat_tables(self.records))

    def _keep_records(self, batch: pa.Table) -> pa.Table:
        """The batch's rows with personal traits into `records`; returns the rows that are identity evidence
        (omniweave's own events are read only for their records)."""
        from omniweave.identity.service.resolve import _PERSONAL, RECORDS_SCHEMA

        personal = np.zeros(batch.num_rows, bool)
        for name in _PERSONAL:
            personal |= pc.is_valid(batch.column(name)).to_numpy(zero_copy_only=False)
        if personal.any() and self.records is not None:
            rows = batch.filter(pa.array(personal))
            nulls = pa.nulls(rows.num_rows, pa.string())
            # `record_table` takes no coupons: its records are people's details, not what they bought
            rows = rows.set_column(rows.schema.get_field_index("p_coupon_code"), "p_coupon_code", nulls)
            rows = rows.set_column(rows.schema.get_field_index("p_coupon"), "p_coupon", nulls)
            self.records.append(rows.select(RECORDS_SCHEMA.names).cast(RECORDS_SCHEMA))
        internal = pc.fill_null(batch.column("internal"), False)
        if pc.any(internal).as_py():
            batch = batch.filter(pc.invert(internal))
        return batch.drop_columns(["internal", *_PERSONAL])

    def norm(self, kind: str, raw: pa.Array, blocked: frozenset[str] | None = None) -> tuple[pa.Array, np.ndarray]:
        values, status = normalize_array(
            kind,
            raw,
            self.rules.default_region,
            self.rules.customer_number_prefix,
            self.rules.blocked if blocked is None else blocked,
            self.cache,
        )
        return values, status

    def count(self, kind: str, status: np.ndarray) -> None:
        invalid, blocked = int((status == INVALID).sum()), int((status == BLOCKED).sum())
        if invalid:
            self.summary.invalid[kind] += invalid
        if blocked:
            self.summary.blocked[kind] += blocked

    def batch(self, batch: pa.Table) -> None:
        """Normalise one batch of event rows into long rows (spilled), aliases and counts."""
        if "internal" in batch.schema.names:
            batch = self._keep_records(batch)
        n = batch.num_rows
        if not n:
            return
        col = {name: batch.column(name).combine_chunks() for name in batch.schema.names}
        rows: list[np.ndarray] = []
        kinds: list[str] = []
        values: list[pa.Array] = []
        normal: dict[str, pa.Array] = {}

        def add(
            kind: str, raw: pa.Array, name: str | None = None, done: tuple[pa.Array, np.ndarray] | None = None
        ) -> None:
            vals, status = self.norm(kind, raw) if done is None else done
            self.count(kind, status)
            if name:
                normal[name] = vals
            keep = np.flatnonzero(status == OK)
            if keep.size:
                rows.append(keep)
                kinds.append(kind)
                values.append(vals.take(pa.array(keep)))

        for kind in self.trait_kinds:
            add(kind, col[f"t_{kind}"], f"t_{kind}")
            add(kind, col[f"c_{kind}"], f"c_{kind}")
        add("device_id", col["device_id"])
        before_external = len(kinds)
        external_numbers = self.external(col, rows, kinds, values)
        external = set(range(before_external, len(kinds)))
        if self.coupon_kind in self.rules.priorities:
            add(self.coupon_kind, col["p_coupon_code"])
            add(self.coupon_kind, col["p_coupon"])
        add("anonymous_id", col["anonymous_id"])
        self.user(col, normal, external_numbers, add)
        mids, stamps = col["message_id"], col["ts"]
        ordinals = np.arange(self.extracted, self.extracted + n, dtype=np.int64)
        self.extracted += n
        if rows:
            self.spill.write("ids", _long_rows(ordinals, rows, kinds, values, external))
        self.spill.write("msgs", pa.table({"ev": ordinals, "message_id": mids, "timestamp": stamps}))
        top = pc.max(stamps).as_py()
        if top is not None and (self.max_ts is None or top > self.max_ts):
            self.max_ts = top
        self.summary.events += n

    def external(
        self, col: dict[str, pa.Array], rows: list[np.ndarray], kinds: list[str], values: list[pa.Array]
    ) -> dict[int, set[str]]:
        """`context.externalIds` entries of a known kind (Python, one row at a time: few events carry them);
        returns each row's customer numbers (a user id equal to one is that customer number)."""
        raw = col["external_ids"]
        where = np.flatnonzero(pc.is_valid(raw).to_numpy(zero_copy_only=False))
        numbers: dict[int, set[str]] = {}
        found: dict[str, tuple[list[int], list[str]]] = {}
        if not where.size:
            return numbers
        texts = raw.take(pa.array(where)).to_pylist()
        mids = col["message_id"].take(pa.array(where)).to_pylist()
        for row, text, mid in zip(where.tolist(), texts, mids, strict=True):
            try:
                entries = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise InputError(
                    f"context.externalIds is not JSON: {exc}", record=mid, field="context.externalIds"
                ) from exc
            if not isinstance(entries, list):
                raise InputError(
                    f"expected an array of {{id, type}}, got {type(entries).__name__}",
                    record=mid,
                    field="context.externalIds",
                )
            for entry in entries:
                if not (isinstance(entry, dict) and entry.get("type") in self.rules.priorities):
                    continue
                kind, ident = str(entry["type"]), entry.get("id")
                if ident is None or (isinstance(ident, str) and not ident.strip()):
                    continue
                value, status = _python_one(
                    kind,
                    ident if isinstance(ident, str) else str(ident),
                    self.rules.default_region,
                    self.rules.customer_number_prefix,
                    self.rules.blocked,
                    self.cache,
                )
                self.count(kind, np.array([status]))
                if status == OK and value is not None:
                    found.setdefault(kind, ([], []))
                    found[kind][0].append(row)
                    found[kind][1].append(value)
                    if kind == "customer_number":
                        numbers.setdefault(row, set()).add(value)
        for kind, (at, vals) in found.items():
            rows.append(np.asarray(at, dtype=np.int64))
            kinds.append(kind)
            values.append(pa.array(vals, pa.string()))
        return numbers

    def user(
        self, col: dict[str, pa.Array], normal: dict[str, pa.Array], external: dict[int, set[str]], add: Any
    ) -> None:
        """A user id that is one of the event's own customer numbers counts as that number (an alias);
        any other user id is an identifier of its own (the object path's `_Extractor.observation`)."""
        user = col["user_id"]
        default_values, default_status = self.norm("user_id", user, DEFAULT_BLOCKED)
        candidate = default_status == OK
        number, nstatus = self.norm("customer_number", user)
        self.count("customer_number", np.where(candidate, nstatus, OK))
        same = np.zeros(len(user), bool)
        for name in ("t_customer_number", "c_customer_number"):
            if name in normal:
                same |= pc.fill_null(pc.equal(number, normal[name]), False).to_numpy(zero_copy_only=False)
        if external:
            numbers = number.to_pylist()
            for row, found in external.items():
                if numbers[row] in found:
                    same[row] = True
        aliased = candidate & (nstatus == OK) & same
        if aliased.any():
            at = pa.array(np.flatnonzero(aliased))
            raw_users = user.take(at)
            self.spill.write("aliases", pa.table({"raw": raw_users.cast(pa.string()), "number": number.take(at)}))
        if not aliased.any() and self.rules.blocked == DEFAULT_BLOCKED:
            add("user_id", user, done=(default_values, default_status))  # the same values under the same rules
            return
        rest = pc.if_else(pa.array(aliased), pa.nulls(len(user), pa.string()), user.cast(pa.string()))
        add("user_id", rest)


def _long_rows(
    ordinals: np.ndarray, rows: list[np.ndarray], kinds: list[str], values: list[pa.Array], external: set[int]
) -> pa.Table:
    """The long rows `(ev, kind, value)` of one batch, each identifier once per event.

    Part `i` holds the rows `rows[i]` (of the batch) of kind `kinds[i]` with their `values[i]`. A part is
    distinct already (one value per row of one column) unless its kind has other parts too (traits and
    context.traits, a coupon issued and redeemed, an external id of the same kind) or it holds external ids
    (an event may list one twice): only those parts are made distinct, a small share of the rows."""
    names = list(dict.fromkeys(kinds))
    parts = Counter(kinds)
    single = [i for i, kind in enumerate(kinds) if parts[kind] == 1 and i not in external]
    several = [i for i in range(len(kinds)) if i not in single]

    def table(chosen: list[int]) -> pa.Table:
        at = np.concatenate([rows[i] for i in chosen])
        codes = np.repeat(np.asarray([names.index(kinds[i]) for i in chosen], np.int32), [rows[i].size for i in chosen])
        values_ = pa.concat_arrays([values[i].cast(pa.string()) for i in chosen])
        return pa.table({"ev": pa.array(ordinals[at]), "kind": pa.array(codes), "value": values_})

    tables = [table(single)] if single else []
    if several:
        tables.append(table(several).group_by(["ev", "kind", "value"], use_threads=False).aggregate([]))
    dictionary = pa.array(names, pa.string())
    return pa.concat_tables(
        pa.table(
            [
                t.column("ev"),
                pa.DictionaryArray.from_arrays(t.column("kind").combine_chunks(), dictionary),
                t.column("value"),
            ],
            schema=_IDS,
        )
        for t in tables
    )


def extract(
    runtime: Runtime,
    rules: Rules,
    summary: Any,
    spill: Spill,
    seen_url: str | None,
    files: list[str] | None = None,
    records: bool = False,
) -> _Extract:
    """Stream the identifiers of the events not in the saved observations (`seen_url`, a file or a glob) into
    `spill`; with `files`, only the events of these files of the log (as `EventLog.files` lists them).

    `records` (when the scan covers the whole log, as `resolve.record_table` does): the raw identity records
    are gathered from the same scan (`_Extract.record_table`), rather than by a second scan of the log."""
    from omniweave.identity.service.resolve import (
        _EXTRACT_SQL,
        COUPON_KIND,
        TRAIT_KINDS,
        _traits_sql,
        extract_with_records_sql,
    )

    out = _Extract(rules, summary, spill, TRAIT_KINDS, COUPON_KIND)
    if records:
        out.records = []
    if not runtime.log.has_data("events") or files == []:
        return out
    warehouse = runtime.warehouse()
    sql = extract_with_records_sql() if records else _EXTRACT_SQL.format(traits=_traits_sql())
    if files is None:
        warehouse.table("events")
    else:
        warehouse.con.create_view("identity_events", warehouse.files_table("events", files), overwrite=True)
        sql = sql.replace("FROM events", "FROM identity_events")
    if seen_url:
        warehouse.engine.register_parquet(warehouse.con, "identity_seen", seen_url)
        sql += " AND message_id NOT IN (SELECT message_id FROM identity_seen)"
    pending: list[pa.RecordBatch] = []
    size = 0
    for batch in warehouse.engine.batches(warehouse.con, sql, BATCH_ROWS):
        pending.append(batch)
        size += batch.num_rows
        if size >= BATCH_ROWS:  # the engine may hand over small batches (a file, a vector): gather them
            out.batch(pa.Table.from_batches(pending).combine_chunks())
            pending, size = [], 0
    if pending:
        out.batch(pa.Table.from_batches(pending).combine_chunks())
    return out


# --- 2-4. graph, stitch, write ------------------------------------------------------------------------


def _kinds_table(rules: Rules, extra: list[str]) -> pa.Table:
    kinds = list(rules.priorities) + sorted(set(extra) - set(rules.priorities))
    return pa.table(
        {
            "kind": kinds,
            "kind_code": list(range(len(kinds))),
            "priority": [rules.priority(k) for k in kinds],
            "lim": [int(rules.limits.get(k, -1)) for k in kinds],
        }
    )


def _share_table(rules: Rules, kinds: list[str]) -> pa.Table:
    """(ikind, jkind, lim): an identifier of kind ikind seen with more than lim distinct jkind values is demoted."""
    rows: list[tuple[str, str, int]] = []
    for ikind in kinds:
        if ikind == "user_id":
            continue  # a user id is the person: never demoted
        limits = {**rules.share_limits, **rules.personal_share_limits.get(ikind, {})}
        rows.extend((ikind, jkind, int(lim)) for jkind, lim in limits.items())
    return pa.table(
        {"ikind": [r[0] for r in rows], "jkind": [r[1] for r in rows], "lim": [r[2] for r in rows]},
        schema=pa.schema([("ikind", pa.string()), ("jkind", pa.string()), ("lim", pa.int64())]),
    )


def _has_rows(path: str) -> bool:
    try:
        return "message_id" in pq.read_schema(path).names
    except (FileNotFoundError, OSError):
        return False


class Graph:
    """The observations of all runs in a DuckDB connection (under the memory limit), and the graph built there."""

    def __init__(self, runtime: Runtime, rules: Rules):
        self.runtime, self.rules = runtime, rules
        self.duck = duckdb.connect()
        runtime.engine.limit_memory(self.duck)
        self.log = runtime.log
        self.state = self.log.dataset_path("identity_state")

    def state_file(self, name: str) -> str | None:
        path = posixpath.join(self.state, f"{name}.parquet")
        return path if self.log.fs.exists(path) and _local(self.log) else None

    def sql(self, query: str) -> Any:
        return self.duck.sql(query)

    def execute(self, query: str) -> None:
        self.duck.execute(query)

    def close(self) -> None:
        self.duck.close()


def _local(log: Any) -> bool:
    protocol = log.fs.protocol if isinstance(log.fs.protocol, str) else log.fs.protocol[0]
    return protocol in ("file", "local")


def _files(*paths: str | None) -> str:
    return "[" + ", ".join(f"'{p}'" for p in paths if p) + "]"


def build(
    runtime: Runtime,
    rules: Rules,
    spill: Spill,
    summary: Any,
    console: Any = None,
    increment: list[Observation] | None = None,
) -> Stitcher:
    """Steps 2-4 of the module docstring; returns the walked part of the graph (a small `Stitcher`).

    `increment`: a few observations made in Python (this run's probabilistic links) stitched *after* the
    bulk graph, rule by rule, like the object path adds them: their merges are logged. When they do not
    sort after every other observation, or they change which identifiers are demoted, they join the bulk
    like any other (the object path re-derives then too)."""
    g = Graph(runtime, rules)
    try:
        with memory_guard("resolve", runtime.engine.memory_limit):
            return _build(g, spill, summary, console, sorted(increment or [], key=lambda o: o.key))
    finally:
        g.close()


def _say(console: Any, text: str, started: float) -> None:
    if console:
        console.print(f"  {text} ({time.perf_counter() - started:.1f} s)")


def _build(g: Graph, spill: Spill, summary: Any, console: Any, increment: list[Observation]) -> Stitcher:  # noqa: C901
    started = time.perf_counter()
    rules = g.rules
    _load_observations(g, spill, observation_files(g.runtime) if _local(g.log) else [])
    rows = [(o.message_id, o.key[0], k, v) for o in increment for k, v in o.identifiers]
    g.duck.register(
        "inc_arrow",
        pa.table(
            {n: [r[i] for r in rows] for i, n in enumerate(("message_id", "ts", "kind", "value"))},
            schema=pa.schema([(c, pa.string()) for c in ("message_id", "ts", "kind", "value")]),
        ),
    )
    # this run's probabilistic links: events of their own, numbered after the others
    g.execute(
        "CREATE TEMP TABLE inc_ids AS SELECT *, (SELECT coalesce(max(ev) + 1, 0) FROM raw_msgs) "
        "+ dense_rank() OVER (ORDER BY message_id) - 1 AS ev FROM inc_arrow"
    )
    present = [r[0] for r in g.duck.execute("SELECT DISTINCT kind FROM ids UNION SELECT kind FROM inc_ids").fetchall()]
    kinds = _kinds_table(rules, present)
    share = _share_table(rules, kinds.column("kind").to_pylist())
    g.duck.register("kinds_arrow", kinds)
    g.duck.register("share_arrow", share)
    g.execute("CREATE TEMP TABLE kinds AS SELECT * FROM kinds_arrow")
    g.execute("CREATE TEMP TABLE share AS SELECT * FROM share_arrow")
    g.execute(_COOC_SQL.format(name="cooc", ids="ids", key="ev"))
    g.execute(_DEMOTED_FROM_COOC.format(name="demoted", cooc="cooc"))
    walk_increment = bool(increment) and _increment_walks(g, increment)
    if increment and not walk_increment:  # they join the bulk
        g.execute("INSERT INTO ids SELECT DISTINCT ev, kind, value FROM inc_ids")
        g.execute("INSERT INTO raw_msgs SELECT message_id, min(ts), min(ev) FROM inc_ids GROUP BY message_id")
        g.execute(_COOC_SQL.format(name="cooc", ids="ids", key="ev"))
        g.execute(_DEMOTED_FROM_COOC.format(name="demoted", cooc="cooc"))
    g.execute(
        f"CREATE TEMP TABLE msgs AS SELECT message_id, ts, (row_number() OVER (ORDER BY {_canonical_order(g)}) - 1)"
        "::BIGINT AS rank, ev FROM raw_msgs"
    )
    g.execute("DROP TABLE raw_msgs")
    _say(console, "observations ranked, share limits checked", started)
    # identifiers numbered in the order of the primary (priority, then value; then kind, as the object path's
    # sorted identifiers break a tie): an observation's primary is its smallest code
    g.execute(
        """CREATE TEMP TABLE idents AS
        SELECT kind, value, (row_number() OVER (ORDER BY k.priority, value, kind) - 1)::BIGINT AS code
        FROM (SELECT DISTINCT kind, value FROM ids) JOIN kinds k USING (kind)"""
    )
    g.execute(
        """CREATE TEMP TABLE od AS
        SELECT m.rank, d.code, (dm.kind IS NOT NULL) AS demoted
        FROM ids i JOIN msgs m USING (ev) JOIN idents d USING (kind, value) LEFT JOIN demoted dm USING (kind, value)"""
    )
    g.execute("CREATE TEMP TABLE prim AS SELECT rank, min(code) AS p FROM od WHERE NOT demoted GROUP BY rank")
    g.execute(
        """CREATE TEMP TABLE edges AS
        SELECT od.rank, prim.p AS a, od.code AS b FROM od JOIN prim USING (rank)
        WHERE NOT od.demoted AND od.code <> prim.p"""
    )
    n = int(g.duck.execute("SELECT count(*) FROM idents").fetchone()[0])  # type: ignore[index]
    kind_codes = g.duck.execute("SELECT k.kind_code FROM idents JOIN kinds k USING (kind) ORDER BY code").fetchnumpy()
    firsts = g.duck.execute(
        "SELECT code, min(rank) AS r FROM (SELECT p AS code, rank FROM prim UNION ALL "
        "SELECT code, rank FROM od WHERE demoted) GROUP BY code"
    ).fetchnumpy()
    first = np.full(n, NEVER, dtype=np.int64)
    first[firsts["code"].astype(np.int64)] = firsts["r"].astype(np.int64)
    ends = g.duck.execute("SELECT DISTINCT a, b FROM edges").fetchnumpy()
    a, b = ends["a"].astype(np.int64), ends["b"].astype(np.int64)
    del ends, firsts
    _say(console, f"{n:,} identifiers, {a.size:,} links", started)
    bulk = stitch_links(
        n,
        kind_codes["kind_code"].astype(np.int64) if n else np.zeros(0, np.int64),
        first,
        a,
        b,
        np.asarray(kinds.column("lim").to_pylist(), dtype=np.int64),
    )
    del kind_codes
    splits = _splits(g)
    if splits:
        _dirty_splits(g, bulk, splits)
    dirty_v = bulk.dirty[bulk.labels]
    root = bulk.founder[bulk.labels]
    _say(console, f"components: {int(dirty_v.sum()):,} identifiers to walk rule by rule", started)
    del a, b
    dirty_codes = np.flatnonzero(dirty_v)
    g.duck.register("dirty_arrow", pa.table({"code": dirty_codes}))
    linked = g.duck.execute("SELECT DISTINCT rank FROM edges SEMI JOIN dirty_arrow ON a = code").fetchnumpy()["rank"]
    walk_ranks = np.union1d(np.unique(first[dirty_v & (first != NEVER)]), linked.astype(np.int64)).astype(np.int64)
    sub = _walk(g, rules, splits, walk_ranks)
    sub.assign_split_ids()  # split components are walked: the kept part keeps the person id
    clean = ~dirty_v
    g.duck.register(
        "clean_arrow",
        pa.table({"code": np.flatnonzero(clean), "root": root[clean], "first": first[clean]}),
    )
    g.execute("CREATE TEMP TABLE clean AS SELECT * FROM clean_arrow")
    del root, first, bulk
    _say(console, f"walked {walk_ranks.size:,} observations", started)
    _write_state(g, [sub], spill, summary, console, started, increment if walk_increment else [])
    return sub


def _canonical_order(g: Graph) -> str:
    """ORDER BY of the canonical order (timestamp text, message id) for `raw_msgs`. When every timestamp has
    the one width of `_EXTRACT_SQL`'s format (`2026-01-31T23:59:59.123456Z`), the text sorts as the instant
    it names, and sorting by the instant (an integer) first costs half as much as comparing 30 M strings; the
    text and the message id still break its ties, so the order is the same."""
    width = g.duck.execute(
        "SELECT min(length(ts)), max(length(ts)), count(*) FILTER (WHERE try_cast(ts AS TIMESTAMP) IS NULL) "
        "FROM raw_msgs"
    ).fetchone()
    if width and width[0] == width[1] == len("2026-01-31T23:59:59.123456Z") and not width[2]:
        return "try_cast(ts AS TIMESTAMP), ts, message_id"
    return "ts, message_id"


_COOC_SQL = """CREATE OR REPLACE TEMP TABLE {name} AS
WITH watched AS (SELECT {key}, kind AS jkind, value AS jvalue FROM {ids}
                 WHERE kind IN (SELECT jkind FROM share))
SELECT DISTINCT i.kind AS ikind, i.value AS ivalue, w.jkind, w.jvalue
FROM {ids} i JOIN watched w ON i.{key} = w.{key}
WHERE i.kind IN (SELECT ikind FROM share) AND NOT (i.kind = w.jkind AND i.value = w.jvalue)"""
"""The share limits' co-occurrences: each identifier that a share limit may demote, with every distinct value
of a watched kind (user ids, e-mails, ...) seen in one observation with it. Saved with the state, so that the
daily increment checks the demotion of the identifiers it touches without reading the observations."""
_DEMOTED_FROM_COOC = """CREATE OR REPLACE TEMP TABLE {name} AS
SELECT DISTINCT ikind AS kind, ivalue AS value
FROM (SELECT ikind, ivalue, jkind, count(*) AS n FROM {cooc} GROUP BY ikind, ivalue, jkind)
JOIN share USING (ikind, jkind) WHERE n > lim"""
"""`_DEMOTED_SQL` over co-occurrences (`_COOC_SQL`, distinct rows)."""


def _load_observations(g: Graph, spill: Spill, old: list[str]) -> None:
    """`ids` (ev, kind, value) and `raw_msgs` (message_id, ts, ev): this run's extracted events and the saved
    observations (numbered after them), each message once (its first time; a message id seen in several
    events is one observation with all their identifiers, as the object path has it)."""
    new_ids, new_msgs = spill.glob("ids"), spill.glob("msgs")
    g.execute("CREATE TEMP TABLE all_msgs (message_id VARCHAR, ts VARCHAR, ev BIGINT)")
    g.execute("CREATE TEMP TABLE ids (ev BIGINT, kind VARCHAR, value VARCHAR)")
    if new_msgs:
        g.execute(f"INSERT INTO all_msgs SELECT message_id, timestamp, ev FROM read_parquet('{new_msgs}')")
    if new_ids:
        g.execute(f"INSERT INTO ids SELECT ev, kind, value FROM read_parquet('{new_ids}')")
    if old:
        g.execute(
            "CREATE TEMP TABLE old_obs AS SELECT message_id, timestamp, kind, value "
            f"FROM read_parquet({_files(*old)}, union_by_name = true)"
        )
        first = g.duck.execute("SELECT coalesce(max(ev) + 1, 0) FROM all_msgs").fetchone()
        offset = int(first[0]) if first else 0
        g.execute(
            f"""INSERT INTO all_msgs SELECT message_id, ts, {offset} + row_number() OVER () - 1
            FROM (SELECT message_id, min(timestamp) AS ts FROM old_obs GROUP BY message_id)"""
        )
        g.execute(
            f"""INSERT INTO ids SELECT DISTINCT m.ev, o.kind, o.value
            FROM old_obs o JOIN (SELECT message_id, ev FROM all_msgs WHERE ev >= {offset}) m USING (message_id)
            WHERE o.kind IS NOT NULL"""
        )
        g.execute("DROP TABLE old_obs")
    # a message id in several events is rare: found by its hash first (grouping 30 M integers, not strings)
    g.execute(
        """CREATE TEMP TABLE repeated AS
        SELECT message_id, min(ts) AS ts, min(ev) AS canon FROM all_msgs
        WHERE hash(message_id) IN (SELECT h FROM (SELECT hash(message_id) AS h FROM all_msgs) GROUP BY h HAVING count(*) > 1)
        GROUP BY message_id HAVING count(*) > 1"""
    )
    count = g.duck.execute("SELECT count(*) FROM repeated").fetchone()
    if count and count[0]:  # their rows move onto the message's first event, at its first time
        g.execute(
            """CREATE TEMP TABLE remap AS SELECT a.ev, r.canon
            FROM all_msgs a JOIN repeated r USING (message_id) WHERE a.ev <> r.canon"""
        )
        g.execute(
            """CREATE OR REPLACE TEMP TABLE ids AS
            SELECT DISTINCT coalesce(r.canon, i.ev) AS ev, i.kind, i.value FROM ids i LEFT JOIN remap r USING (ev)"""
        )
        g.execute(
            """CREATE TEMP TABLE raw_msgs AS
            SELECT a.message_id, coalesce(r.ts, a.ts) AS ts, a.ev FROM all_msgs a LEFT JOIN repeated r USING (message_id)
            WHERE r.canon IS NULL OR a.ev = r.canon"""
        )
        g.execute("DROP TABLE all_msgs")
    else:
        g.execute("ALTER TABLE all_msgs RENAME TO raw_msgs")


_DEMOTED_SQL = """CREATE TEMP TABLE {name} AS
WITH watched AS (SELECT ev, kind AS jkind, value AS jvalue FROM {ids}
                 WHERE kind IN (SELECT jkind FROM share)),
seen AS (SELECT i.kind AS ikind, i.value AS ivalue, w.jkind, count(DISTINCT w.jvalue) AS n
         FROM {ids} i JOIN watched w ON i.ev = w.ev
         WHERE i.kind IN (SELECT ikind FROM share) AND NOT (i.kind = w.jkind AND i.value = w.jvalue) {only}
         GROUP BY ALL)
SELECT DISTINCT ikind AS kind, ivalue AS value FROM seen JOIN share USING (ikind, jkind) WHERE n > lim"""
"""Identifiers seen with more distinct user ids or e-mails (or, for coupon codes, cards) than the share limits
allow (`Stitcher._count` and `_demoted`)."""


def _increment_walks(g: Graph, increment: list[Observation]) -> bool:
    """Whether the increment sorts after every observation and leaves the demoted identifiers as they are."""
    last = g.duck.execute("SELECT ts, message_id FROM raw_msgs ORDER BY ts DESC, message_id DESC LIMIT 1").fetchone()
    if last is not None and increment[0].key <= (last[0], last[1]):
        return False
    g.execute("CREATE TEMP TABLE touched AS SELECT DISTINCT kind, value FROM inc_ids")
    g.execute(
        """CREATE TEMP TABLE around AS
        SELECT ev, kind, value FROM ids
        WHERE ev IN (SELECT ev FROM ids SEMI JOIN touched USING (kind, value))
        UNION ALL SELECT ev, kind, value FROM inc_ids"""
    )
    only = "AND (i.kind, i.value) IN (SELECT (kind, value) FROM touched)"
    g.execute(_DEMOTED_SQL.format(name="demoted_after", ids="around", only=only))
    changed = g.duck.execute(
        """SELECT count(*) FROM (
            (SELECT * FROM demoted_after EXCEPT SELECT * FROM demoted SEMI JOIN touched USING (kind, value))
            UNION ALL
            (SELECT * FROM demoted SEMI JOIN touched USING (kind, value) EXCEPT SELECT * FROM demoted_after))"""
    ).fetchone()
    return not (changed and changed[0])


def _walk_increment(g: Graph, rules: Rules, splits: list[Split], increment: list[Observation]) -> Stitcher:
    """The increment stitched rule by rule onto the persons it touches (loaded from the bulk graph's `nodes`
    and `founders`), which it then replaces there."""
    g.execute(
        """CREATE TEMP TABLE touched_roots AS
        SELECT DISTINCT root_kind, root_value FROM nodes SEMI JOIN touched USING (kind, value)"""
    )
    sub = Stitcher(rules)
    sub.splits = list(splits)
    sub._reset()
    members = g.duck.execute(
        "SELECT kind, value, root_kind, root_value FROM nodes SEMI JOIN touched_roots USING (root_kind, root_value)"
    ).fetchall()
    for kind, value, root_kind, root_value in members:
        root = (root_kind, root_value)
        sub.parent[(kind, value)] = root
        sub.members.setdefault(root, {}).setdefault(kind, set()).add(value)
    founders = g.duck.execute("SELECT * FROM founders SEMI JOIN touched_roots USING (root_kind, root_value)").fetchall()
    for root_kind, root_value, key_ts, key_mid, kind, value, person_id in founders:
        sub.founder[(root_kind, root_value)] = ((key_ts, key_mid), (kind, value))
        if person_id != person_id_for((kind, value)):  # an id a split moved (Stitcher.assign_split_ids)
            sub._ids[(kind, value)] = person_id
    demoted = g.duck.execute("SELECT kind, value FROM demoted SEMI JOIN touched USING (kind, value)").fetchall()
    sub.demoted = frozenset((k, v) for k, v in demoted)
    for obs in increment:
        sub._stitch(obs)
    g.execute("DELETE FROM nodes WHERE (root_kind, root_value) IN (SELECT (root_kind, root_value) FROM touched_roots)")
    g.execute(
        "DELETE FROM founders WHERE (root_kind, root_value) IN (SELECT (root_kind, root_value) FROM touched_roots)"
    )
    g.duck.register("inc_nodes", _nodes_table(sub, None))
    g.execute("INSERT INTO nodes SELECT * FROM inc_nodes")
    g.duck.register("inc_founders", _founders_table(sub))
    g.execute("INSERT INTO founders SELECT * FROM inc_founders")
    return sub


def _nodes_table(sub: Stitcher, only: set[Identifier] | None) -> pa.Table:
    walked = [(i, sub.find(i)) for i in sub.parent]
    return pa.table(
        {
            "kind": [i[0] for i, _ in walked],
            "value": [i[1] for i, _ in walked],
            "root_kind": [r[0] for _, r in walked],
            "root_value": [r[1] for _, r in walked],
        },
        schema=_IDENT4,
    )


def _founders_table(sub: Stitcher) -> pa.Table:
    founders = [(r, key, f) for r, (key, f) in sub.founder.items() if r in sub.members]  # live roots only
    return pa.table(
        {
            "root_kind": [r[0] for r, _, _ in founders],
            "root_value": [r[1] for r, _, _ in founders],
            "key_timestamp": [k[0] for _, k, _ in founders],
            "key_message_id": [k[1] for _, k, _ in founders],
            "kind": [f[0] for _, _, f in founders],
            "value": [f[1] for _, _, f in founders],
            "person_id": [sub._pid(r) for r, _, _ in founders],
        },
        schema=pa.schema(
            [
                (c, pa.string())
                for c in ("root_kind", "root_value", "key_timestamp", "key_message_id", "kind", "value", "person_id")
            ]
        ),
    )


def _splits(g: Graph) -> list[Split]:
    path = g.state_file("splits")
    if not path or "person_id" not in pq.read_schema(path).names:
        return []
    return [
        Split(r["person_id"], (r["kind"], r["value"]), (r["anchor_kind"], r["anchor_value"]))
        for r in pq.read_table(path).to_pylist()
    ]


def _codes(g: Graph, idents: list[Identifier]) -> dict[Identifier, int]:
    if not idents:
        return {}
    g.duck.register("wanted", pa.table({"kind": [i[0] for i in idents], "value": [i[1] for i in idents]}))
    return {
        (k, v): int(c)
        for k, v, c in g.duck.execute("SELECT kind, value, code FROM idents JOIN wanted USING (kind, value)").fetchall()
    }


def _dirty_splits(g: Graph, bulk: Any, splits: list[Split]) -> None:
    """A split inside a component: the rules must be walked there too."""
    codes = _codes(g, [s.identifier for s in splits] + [s.anchor for s in splits])
    for s in splits:
        x, y = codes.get(s.identifier), codes.get(s.anchor)
        if x is not None and y is not None and bulk.labels[x] == bulk.labels[y]:
            bulk.dirty[bulk.labels[x]] = True


def _walk(g: Graph, rules: Rules, splits: list[Split], ranks: np.ndarray) -> Stitcher:
    """The observations of the components a rule may cut, walked rule by rule by the object stitcher."""
    sub = Stitcher(rules)
    sub.splits = list(splits)
    sub._reset()
    if not ranks.size:
        return sub
    g.duck.register("walk_arrow", pa.table({"rank": ranks}))
    rows = g.duck.execute(
        """SELECT m.rank, m.message_id, m.ts, od.kind, od.value, od.demoted
        FROM msgs m JOIN walk_arrow w USING (rank)
        LEFT JOIN (SELECT o.rank, i.kind, i.value, o.demoted FROM od o JOIN idents i USING (code)) od USING (rank)
        ORDER BY m.rank"""
    ).fetchall()
    demoted: set[Identifier] = set()
    grouped: dict[int, tuple[str, str, list[Identifier]]] = {}
    for rank, mid, ts, kind, value, is_demoted in rows:
        entry = grouped.setdefault(rank, (mid, ts, []))
        if kind is not None:
            entry[2].append((kind, value))
            if is_demoted:
                demoted.add((kind, value))
    sub.demoted = frozenset(demoted)
    for rank in sorted(grouped):
        mid, ts, ids = grouped[rank]
        sub._stitch(Observation(mid, ts, tuple(sorted(ids))))
    return sub


def _write_state(
    g: Graph,
    subs: list[Stitcher],
    spill: Spill,
    summary: Any,
    console: Any,
    started: float,
    increment: list[Observation],
) -> None:
    """Nodes, founders, links, refusals, history, observations and meta, then `identities`."""
    from omniweave.identity.service.resolve import _write

    sub = subs[0]
    g.execute("CREATE TEMP TABLE dirty AS SELECT i.kind, i.value FROM idents i JOIN dirty_arrow USING (code)")
    g.duck.register("walked_arrow", _nodes_table(sub, None))
    # a demoted identifier of a clean component is its own person already: the walk made it again
    g.execute(
        """CREATE TEMP TABLE nodes AS
        SELECT i.kind, i.value, r.kind AS root_kind, r.value AS root_value
        FROM clean c JOIN idents i ON i.code = c.code JOIN idents r ON r.code = c.root
        UNION ALL SELECT w.* FROM walked_arrow w SEMI JOIN dirty USING (kind, value)"""
    )
    g.duck.register("walked_founders", _founders_table(sub))
    g.execute(
        f"""CREATE TEMP TABLE founders AS
        SELECT r.kind AS root_kind, r.value AS root_value, m.ts AS key_timestamp, m.message_id AS key_message_id,
               r.kind, r.value, {_PERSON_ID.format(k="r.kind", v="r.value")} AS person_id
        FROM clean c JOIN idents r ON r.code = c.code JOIN msgs m ON m.rank = c.first WHERE c.code = c.root
        UNION ALL SELECT f.* FROM walked_founders f SEMI JOIN dirty d ON d.kind = f.root_kind AND d.value = f.root_value"""
    )
    if increment:
        subs = [sub, _walk_increment(g, g.rules, sub.splits, increment)]
        g.execute(_COOC_SQL.format(name="inc_cooc", ids="inc_ids", key="ev"))
        g.execute("INSERT INTO cooc SELECT * FROM inc_cooc EXCEPT SELECT * FROM cooc")
        g.execute("INSERT INTO ids SELECT DISTINCT ev, kind, value FROM inc_ids")
        g.execute(
            """INSERT INTO msgs SELECT message_id, ts, (SELECT count(*) FROM msgs) + row_number() OVER (ORDER BY ts, message_id) - 1, ev
            FROM (SELECT message_id, min(ts) AS ts, min(ev) AS ev FROM inc_ids GROUP BY message_id)"""
        )
    g.execute(
        """CREATE TEMP TABLE node_person AS
        SELECT n.kind, n.value, f.person_id
        FROM nodes n JOIN founders f ON f.root_kind = n.root_kind AND f.root_value = n.root_value"""
    )
    _say(console, "persons", started)
    g.execute(
        f"""CREATE TEMP TABLE links AS
        WITH firsts AS (SELECT a, b, min(rank) AS rank FROM edges WHERE a IN (SELECT code FROM clean) GROUP BY a, b)
        SELECT x.kind AS a_kind, x.value AS a_value, y.kind AS b_kind, y.value AS b_value, m.message_id,
               m.ts AS timestamp, 'same event' AS rule, {_PERSON_ID.format(k="r.kind", v="r.value")} AS survivor,
               NULL::VARCHAR AS merged, firsts.rank AS _rank, k.priority AS _priority, y.value AS _v
        FROM firsts JOIN idents x ON x.code = firsts.a JOIN idents y ON y.code = firsts.b JOIN kinds k ON k.kind = y.kind
        JOIN clean c ON c.code = firsts.a JOIN idents r ON r.code = c.root JOIN msgs m ON m.rank = firsts.rank"""
    )
    links = [row for w in subs for row in w.state()["links"]]
    g.duck.register("walked_links", pa.Table.from_pylist(links, schema=_LINKS) if links else _LINKS.empty_table())
    _write_history(g, subs)
    folder = g.state
    g.log.fs.makedirs(folder, exist_ok=True)

    def save(name: str, query: str) -> None:
        _copy(g, query, posixpath.join(folder, f"{name}.parquet"))

    save("observations", _OBSERVATIONS_SQL)
    remove_deltas(g.runtime)
    save("demoted", "SELECT kind, value FROM demoted ORDER BY kind, value")
    save("cooc", "SELECT ikind, ivalue, jkind, jvalue FROM cooc")
    save("nodes", "SELECT * FROM nodes")
    save("founders", "SELECT * FROM founders")
    save(
        "links",
        "SELECT * EXCLUDE (_rank, _priority, _v) FROM (SELECT * FROM links ORDER BY _rank, _priority, _v) "
        "UNION ALL SELECT * FROM walked_links",
    )
    refusals = [row for w in subs for row in w.state()["refusals"]]
    _write(g.log, posixpath.join(folder, "refusals.parquet"), _plain(refusals))
    save("history", "SELECT * FROM history")
    _write(g.log, posixpath.join(folder, "splits.parquet"), _plain(sub.state()["splits"]))
    _write_aliases(g, spill)
    meta = g.duck.execute("SELECT ts, message_id FROM msgs ORDER BY rank DESC LIMIT 1").fetchone()
    summary.observations = int(g.duck.execute("SELECT count(*) FROM msgs").fetchone()[0])  # type: ignore[index]
    _write(
        g.log,
        posixpath.join(folder, "meta.parquet"),
        pa.table(
            {
                "last_timestamp": [meta[0] if meta else None],
                "last_message_id": [meta[1] if meta else None],
                "observations": [summary.observations],
            },
            schema=pa.schema(
                [("last_timestamp", pa.string()), ("last_message_id", pa.string()), ("observations", pa.int64())]
            ),
        ),
    )
    _say(console, "state saved", started)
    summary.identifiers = int(g.duck.execute("SELECT count(*) FROM nodes").fetchone()[0])  # type: ignore[index]
    summary.persons = int(g.duck.execute("SELECT count(*) FROM founders").fetchone()[0])  # type: ignore[index]
    summary.merges = sum(1 for w in subs for link in w.links if link.merged)
    summary.refused = sum(len(w.refusals) for w in subs)
    summary.demoted = sorted((k, v) for k, v in g.duck.execute("SELECT kind, value FROM demoted").fetchall())


_OBSERVATIONS_SQL = """
SELECT m.message_id, m.ts AS timestamp, i.kind, i.value
FROM msgs m LEFT JOIN ids i USING (ev)
"""
"""Every observation's rows, in no particular order: every reader groups them by message id (sorting 90 M rows
of strings at a million persons was a full sort spilled to disk, for nothing)."""

_IDENT4 = pa.schema([(c, pa.string()) for c in ("kind", "value", "root_kind", "root_value")])
_LINKS = pa.schema(
    [
        (c, pa.string())
        for c in ("a_kind", "a_value", "b_kind", "b_value", "message_id", "timestamp", "rule", "survivor", "merged")
    ]
)


def _plain(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows) if rows else pa.table({"_empty": pa.array([], pa.string())})


def _write_history(g: Graph, subs: list[Stitcher]) -> None:
    """Every person id ever given → its founder; ids that no longer lead anywhere point at the person
    holding their founder (the object path's `_recompute`), merges of the walk first."""
    old = g.state_file("history")
    if old and "person_id" in pq.read_schema(old).names:
        g.execute(f"CREATE TEMP TABLE old_history AS SELECT person_id, kind, value FROM read_parquet('{old}')")
    else:
        g.execute("CREATE TEMP TABLE old_history (person_id VARCHAR, kind VARCHAR, value VARCHAR)")
    history: dict[str, Identifier] = {}
    merged: dict[str, str] = {}
    for sub in subs:
        for person, founder in sub.history.items():
            history.setdefault(person, founder)
        merged.update(sub.merged_into)
    walked = pa.table(
        {
            "person_id": list(history),
            "kind": [f[0] for f in history.values()],
            "value": [f[1] for f in history.values()],
            "merged_into": [merged.get(p) for p in history],
        },
        schema=pa.schema([(c, pa.string()) for c in ("person_id", "kind", "value", "merged_into")]),
    )
    g.duck.register("walked_history", walked)
    # a live person's founder comes from `founders` first: a split may have given its id to another founder
    g.execute(
        """CREATE TEMP TABLE history AS
        WITH every AS (
            SELECT person_id, kind, value, 0 AS src FROM founders
            UNION ALL SELECT person_id, kind, value, 1 FROM old_history
            UNION ALL SELECT person_id, kind, value, 2 FROM walked_history),
        one AS (SELECT person_id, arg_min(kind, src) AS kind, arg_min(value, src) AS value, min(src) AS src
                FROM every GROUP BY person_id)
        SELECT one.person_id, one.kind, one.value,
               coalesce(w.merged_into, CASE WHEN np.person_id <> one.person_id THEN np.person_id END) AS merged_into
        FROM one LEFT JOIN walked_history w USING (person_id)
        LEFT JOIN node_person np ON np.kind = one.kind AND np.value = one.value
        ORDER BY one.src, one.person_id"""
    )


def _write_aliases(g: Graph, spill: Spill) -> None:
    """Raw user ids that are customer numbers (all runs), then `identities`."""
    from omniweave.identity.service.resolve import HASHED_KINDS

    folder = g.state
    old = g.state_file("aliases")
    parts = [old] if old and "raw" in pq.read_schema(old).names else []
    new = spill.glob("aliases")
    if new:
        parts.append(new)
    sources = [f"SELECT raw, number FROM read_parquet({_files(*parts)})"] if parts else []
    if not parts or not old:
        legacy = _legacy_aliases(g)
        if legacy.num_rows:
            g.duck.register("legacy_aliases", legacy)
            sources.append("SELECT raw, number FROM legacy_aliases")
    if sources:
        g.execute(f"CREATE TEMP TABLE aliases AS SELECT DISTINCT raw, number FROM ({' UNION ALL '.join(sources)})")
    else:
        g.execute("CREATE TEMP TABLE aliases (raw VARCHAR, number VARCHAR)")
    _copy(g, "SELECT * FROM aliases ORDER BY raw", posixpath.join(folder, "aliases.parquet"))
    hashed_kinds = ", ".join(f"'{k}'" for k in sorted(HASHED_KINDS))
    query = f"""
        SELECT kind, value, person_id, CASE WHEN kind IN ({hashed_kinds}) THEN sha256(value) END AS value_sha256
        FROM (SELECT kind, value, person_id, 0 AS part FROM node_person
              UNION ALL
              SELECT 'user_id', a.raw, np.person_id, 1 FROM aliases a
              JOIN node_person np ON np.kind = 'customer_number' AND np.value = a.number
              WHERE NOT EXISTS (SELECT 1 FROM node_person u WHERE u.kind = 'user_id' AND u.value = a.raw))
        ORDER BY part, kind, value"""
    ident_folder = g.log.dataset_path("identities")
    g.log.fs.makedirs(ident_folder, exist_ok=True)
    _copy(g, query, posixpath.join(ident_folder, "identities.parquet"))


def _copy(g: Graph, query: str, final: str) -> None:
    """Write the result of `query` to the (local) file `final`, swapped in by a rename: a reader sees the old
    file or the new one."""
    temp = posixpath.join(posixpath.dirname(final), f".tmp-{uuid.uuid4().hex}")
    try:
        # zstd's fastest level: the observations (tens of millions of rows) cost about a quarter less CPU to
        # write than at its default level 3, in files no larger
        g.execute(f"COPY ({query}) TO '{temp}' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1)")
        g.log.fs.mv(temp, final)
    except BaseException:
        # a full disk or an out-of-memory error: no half-written file stays behind
        with contextlib.suppress(OSError):
            g.log.fs.rm(temp)
        raise


def _legacy_aliases(g: Graph) -> pa.Table:
    """Aliases of a graph the object path saved (it keeps them only in `identities`): user-id rows of the last
    `identities` that are customer numbers."""
    path = posixpath.join(g.log.dataset_path("identities"), "identities.parquet")
    empty = pa.table({"raw": pa.array([], pa.string()), "number": pa.array([], pa.string())})
    if not (g.log.fs.exists(path) and _local(g.log)):
        return empty
    users: Any = g.duck.sql(
        f"SELECT value FROM read_parquet('{path}') WHERE kind = 'user_id' AND person_id IS NOT NULL"
    ).to_arrow_table()
    if users is None or not users.num_rows:
        return empty
    raw = users.column("value").combine_chunks()
    number, status = normalize_array(
        "customer_number", raw, g.rules.default_region, g.rules.customer_number_prefix, frozenset()
    )
    keep = pa.array(status == OK)
    return pa.table({"raw": raw.filter(keep), "number": number.filter(keep)})
