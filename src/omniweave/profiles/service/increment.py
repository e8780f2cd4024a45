"""The daily increment of the profile build: profile again only the persons a new day touched.

A full build (`build.profiles_table`) reads every event of every person. After one more day most persons
have no new event and the same identifiers, so their profile is what it was, but for the columns that depend
on `now` (`age`, `recency_days`, CLV) or on everyone (RFM's quintiles, the best hour's shrinkage, the
messaging channels' population rates). The increment works like this (docs/profiles.md, "The daily
increment"):

1. **State.** A full build saves, beside the profiles, in `profiles_state/`: the event files it read (with
   each file's size and modification time), a copy of the `identities` it used, each person's best-hour sums
   (`_own_*`, before scoring) and the messaging channels' population counts (messages received and responses
   per channel, over everyone).
2. **Checks.** The increment runs only when the state was saved under the same custom traits, on DuckDB, with
   `now` the latest event (the default), no custom trait with a `window_days` (a window moves with `now` for
   everyone), every file read before still there unchanged (a compaction or a privacy deletion rewrites
   files), and no identifier gone from `identities`. Otherwise `build_profiles` runs the full build.
3. **Touched persons.** Those whose identifiers changed (a new person, a new identifier, a merge), and those
   with a new event in the new files (a segment change, omniweave's own bookkeeping, does not count unless it
   carries traits or consent: no column reads it).
4. **Profile them** with the full build's own expression (`_profiles_of`) over their events alone, read from
   the whole log through their anonymous and user ids; the population counts are the saved ones plus the new
   events'.
5. **Everyone's columns.** The other persons' rows are taken from the saved profiles, and on the whole table
   `age`, `recency_days`, RFM, the best hour, CLV and the recommendations are computed again exactly as a full
   build computes them.

`tests/profiles/test_increment.py` holds an increment equal, column for column, to a full build.
"""

from __future__ import annotations

import gc
import hashlib
import json
import posixpath
from dataclasses import asdict
from datetime import datetime
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from omniweave.profiles import insights
from omniweave.profiles.service import build as B
from omniweave.profiles.traits import TraitSpec
from omniweave.runtime import Runtime
from omniweave.storage.engine import dialect_of, to_arrow
from omniweave.storage.eventlog import FLAT_COLUMNS
from omniweave.storage.warehouse import Warehouse

STATE = "profiles_state"
FILES, IDENTITIES, OWN, POPULATION = "files.parquet", "identities.parquet", "own.parquet", "population.parquet"
FORMAT = "1"
"""Bump when the state's layout or meaning changes: a state of another format is not continued."""
OWN_COLUMNS = [f"_own_{name}" for name in B.OWN_HOURS]


def fingerprint(specs: tuple[TraitSpec, ...] | list[TraitSpec]) -> str:
    """A digest of what a build depends on besides the data: the custom traits and the state's format."""
    text = json.dumps({"format": FORMAT, "traits": [asdict(s) for s in specs]}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _path(runtime: Runtime, name: str) -> str:
    return posixpath.join(runtime.log.dataset_path(STATE), name)


def _file_rows(runtime: Runtime, files: list[str]) -> pa.Table:
    """Each event file (relative to the `events` folder) with its size and modification time."""
    fs, base = runtime.log.fs, runtime.log.dataset_path("events")
    paths, sizes, mtimes = [], [], []
    for f in files:
        info = fs.info(f)
        paths.append(posixpath.relpath(f, base))
        sizes.append(int(info.get("size") or 0))
        mtime = info.get("mtime", info.get("LastModified"))
        mtimes.append(str(mtime.timestamp() if hasattr(mtime, "timestamp") else mtime))
    return pa.table({"path": paths, "size": pa.array(sizes, pa.int64()), "mtime": pa.array(mtimes, pa.string())})


def save_state(
    runtime: Runtime,
    files: list[str],
    specs: tuple[TraitSpec, ...] | list[TraitSpec],
    now: datetime,
    own: pa.Table,
    population: pa.Table,
) -> None:
    """Save what the next increment needs (after the profiles are written; the file list last, so that a
    crash in between leaves a state the next build does not continue)."""
    log = runtime.log
    log.fs.makedirs(log.dataset_path(STATE), exist_ok=True)
    forget(runtime)
    log.replace_file(
        _path(runtime, IDENTITIES), _read_dataset(runtime, "identities").select(["kind", "value", "person_id"])
    )
    log.replace_file(_path(runtime, OWN), own)
    log.replace_file(_path(runtime, POPULATION), population)
    table = _file_rows(runtime, files).replace_schema_metadata(
        {"fingerprint": fingerprint(specs), "now": now.isoformat()}
    )
    log.replace_file(_path(runtime, FILES), table)


def _read_dataset(runtime: Runtime, name: str, columns: list[str] | None = None) -> pa.Table:
    """A warehouse dataset as Arrow, read by Arrow itself (many threads; DuckDB's conversion of a wide
    table of lists took 5 CPU s at 1 M profiles)."""
    fs = runtime.log.fs
    tables = []
    for path in runtime.log.files(name):
        with fs.open(path, "rb") as fh:
            tables.append(pq.read_table(fh, columns=columns))
    return pa.concat_tables(tables).combine_chunks() if len(tables) != 1 else tables[0]


def _read(runtime: Runtime, name: str) -> pa.Table:
    with runtime.log.fs.open(_path(runtime, name), "rb") as fh:
        return pq.read_table(fh)


def _usable(
    runtime: Runtime, specs: tuple[TraitSpec, ...] | list[TraitSpec], now: datetime, files: list[str]
) -> list[str] | None:
    """The event files (of `files`, the log's) not read by the saved build, when the increment may continue
    it; else None."""
    log = runtime.log
    if runtime.engine.name != "duckdb" or any(s.window_days for s in specs):
        return None
    if not all(log.fs.exists(_path(runtime, n)) for n in (FILES, IDENTITIES, OWN, POPULATION)):
        return None
    if not log.has_data("profiles"):
        return None
    saved = _read(runtime, FILES)
    meta = saved.schema.metadata or {}
    if meta.get(b"fingerprint", b"").decode() != fingerprint(specs):
        return None
    if datetime.fromisoformat(meta.get(b"now", b"").decode() or "1970-01-01T00:00:00+00:00") > now:
        return None
    current = _file_rows(runtime, files)
    known = {
        (p, s, m)
        for p, s, m in zip(
            current.column("path").to_pylist(),
            current.column("size").to_pylist(),
            current.column("mtime").to_pylist(),
            strict=True,
        )
    }
    before = zip(
        saved.column("path").to_pylist(),
        saved.column("size").to_pylist(),
        saved.column("mtime").to_pylist(),
        strict=True,
    )
    if any(row not in known for row in before):
        return None  # a file read before is gone or was rewritten (a compaction, a deletion)
    seen = set(saved.column("path").to_pylist())
    base = log.dataset_path("events")
    return [f for f in files if posixpath.relpath(f, base) not in seen]


def run(
    runtime: Runtime,
    warehouse: Warehouse,
    events: ir.Table,
    identities: ir.Table,
    now: datetime,
    specs: tuple[TraitSpec, ...] | list[TraitSpec],
    files: list[str],
) -> tuple[pa.Table, pa.Table, pa.Table, int] | None:
    """The profiles as of `now` by the increment, before `finish` (the best hour still as its sums, no CLV
    nor recommendations), with each person's best-hour sums and the population counts to save and how many
    persons were profiled again; None when a full build is needed (the module's checks). `files` are the
    event files `events` reads."""
    new_files = _usable(runtime, specs, now, files)
    if new_files is None:
        return None
    con = events._find_backend()
    old_ids = con.read_parquet(_path(runtime, IDENTITIES))
    new_ids = identities.select("kind", "value", "person_id")
    # the identifiers whose person changed, appeared or went
    diff = new_ids.outer_join(old_ids, [new_ids.kind == old_ids.kind, new_ids.value == old_ids.value]).select(
        new_p=new_ids.person_id, old_p=old_ids.person_id
    )
    diff = diff.filter(diff.new_p.isnull() | diff.old_p.isnull() | (diff.new_p != diff.old_p)).to_pyarrow()
    if diff.column("new_p").null_count:
        return None  # an identifier is gone: events may have lost their person (a full build re-derives)
    persons = new_ids.select("person_id").distinct()
    changed = pc.unique(
        pa.concat_arrays([diff.column("new_p").combine_chunks(), diff.column("old_p").combine_chunks()])
    )
    changed = changed.drop_null().cast(pa.string())
    new_events = warehouse.files_table("events", new_files) if new_files else events.limit(0)  # on one backend
    redone, population = _reprofile(runtime, events, new_events, identities, changed, now, specs)
    # the engine's kept tables went with `_reprofile`'s expressions: DuckDB hands their memory back before the
    # saved profiles are read (the peak)
    gc.collect()
    _shrink(con)

    # the saved rows, with the columns of a fresh part only (not CLV, the recommendations, the scored hour)
    wanted = [n for n in redone.schema.names if n not in OWN_COLUMNS]
    old = _read_dataset(runtime, "profiles", wanted)
    own = _read(runtime, OWN)
    if own.num_rows != old.num_rows:
        return None
    old = _with_own(old, own, redone.schema)
    del own
    keep_persons = persons.to_pyarrow().column("person_id")
    gone = pc.unique(pa.concat_arrays([changed, _ids(redone)]))
    ids_old = old.column("person_id")
    keep = pc.and_(pc.is_in(ids_old, value_set=keep_persons), pc.invert(pc.is_in(ids_old, value_set=gone)))
    # one copy: the kept saved rows and the new ones, taken straight in person order
    combined = pa.concat_tables([old, redone.cast(old.schema)])
    rows = np.concatenate(
        [np.flatnonzero(keep.to_numpy(zero_copy_only=False)), old.num_rows + np.arange(redone.num_rows)]
    )
    if rows.size != persons.count().to_pyarrow().as_py():
        return None  # not one row per person: let the full build say why
    order = pc.sort_indices(pc.take(combined.column("person_id"), pa.array(rows)))
    table = combined.take(pa.array(rows[order.to_numpy()]))
    del combined, old
    table = _with_now(table, now)
    own_out = table.select(["person_id", *OWN_COLUMNS])
    return table, own_out, population, redone.num_rows


def _reprofile(
    runtime: Runtime,
    events: ir.Table,
    new_events: ir.Table,
    identities: ir.Table,
    changed: pa.Array,
    now: datetime,
    specs: tuple[TraitSpec, ...] | list[TraitSpec],
) -> tuple[pa.Table, pa.Table]:
    """The touched persons profiled again (the persons of `changed`, and those with an event in `new_events`
    that says something), and the population counts with the new events'."""
    d = dialect_of(events)
    numbered = B._numbered(identities).cache()
    columns = B._trait_columns(specs)
    # persons with a new event (a segment change counts only when it says something: traits, consent)
    fresh = B.person_events(new_events, numbered, now, d, columns)
    said = fresh.filter((fresh.code != B.INTERNAL) | fresh.traits.notnull() | fresh.consent.notnull())
    msg = insights._messages(fresh)
    added = msg.group_by("channel").aggregate(
        received=(msg.message == insights.MESSAGE_RECEIVED).sum().cast("int64"),
        responses=(msg.message == insights.MESSAGE_RESPONSE).sum().cast("int64"),
    )
    population = _population(_read(runtime, POPULATION), added.to_pyarrow())

    touched_text = ibis.memtable(pa.table({"_p": changed}))
    by_ids = numbered.filter(numbered._person.isin(touched_text._p)).select("person_id")
    touched = by_ids.union(said.select("person_id").distinct()).distinct().cache()
    ids = numbered.filter(numbered.person_id.isin(touched.person_id))
    # their events, from the whole log: first by their anonymous and user ids (a superset), then by person
    anon = ids.filter(ids.kind == "anonymous_id").select(v=ids.value)
    users = ids.filter(ids.kind == "user_id").select(v=ids.value)
    theirs = events.filter(events.anonymous_id.isin(anon.v) | events.user_id.isin(users.v))
    # kept, with the columns a profile reads only: the log is scanned once (the event classes read it again)
    wanted = ["anonymous_id", "user_id", "event", "type", "channel", "timestamp", "traits", *FLAT_COLUMNS]
    theirs = theirs.select(*dict.fromkeys([*wanted, *columns])).cache()
    ev = B.person_events(theirs, numbered, now, d, columns)
    ev = ev.filter(ev.person_id.isin(touched.person_id)).cache()
    orders = B._orders(ev, d).cache()
    table = B._profiles_of(ev, ids, now, specs, orders, B._rfm(orders), ibis.memtable(_rates(population)))
    return B._null_lists_empty(table), population


def _shrink(con: Any) -> None:
    """Have DuckDB hand back the memory its buffer pool keeps (lowering the limit evicts; the setting is then
    restored): the Arrow half of the increment should not add to it."""
    raw = getattr(con, "con", None)
    if raw is None:
        return
    limit = raw.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    raw.execute("SET memory_limit = '64MB'")
    raw.execute(f"SET memory_limit = '{limit}'")


def _ids(table: pa.Table) -> pa.Array:
    return table.column("person_id").combine_chunks()


def _population(saved: pa.Table, added: pa.Table) -> pa.Table:
    """The saved counts per channel plus the new events' (channel, received, responses)."""
    totals: dict[str, list[int]] = {}
    for t in (saved, added):
        for c, r, s in zip(
            t.column("channel").to_pylist(),
            t.column("received").to_pylist(),
            t.column("responses").to_pylist(),
            strict=True,
        ):
            row = totals.setdefault(c, [0, 0])
            row[0] += int(r or 0)
            row[1] += int(s or 0)
    names = sorted(totals)
    return pa.table(
        {
            "channel": pa.array(names, pa.string()),
            "received": pa.array([totals[c][0] for c in names], pa.int64()),
            "responses": pa.array([totals[c][1] for c in names], pa.int64()),
        }
    )


def _rates(population: pa.Table) -> pa.Table:
    """`insights.message_population` from the counts: the same double (an integer divided by an integer)."""
    received = population.column("received").to_numpy().astype(np.float64)
    responses = population.column("responses").to_numpy().astype(np.float64)
    return pa.table(
        {"channel": population.column("channel"), "_pop_rate": pa.array(responses / np.maximum(received, 1.0))}
    )


def _with_own(old: pa.Table, own: pa.Table, schema: pa.Schema) -> pa.Table:
    """Saved profile rows in the shape of a freshly profiled part (`schema`): the best hour back to its sums,
    without the columns added after the part (CLV, recommendations)."""
    own = own.take(pc.index_in(old.column("person_id"), value_set=own.column("person_id")))
    columns = []
    for field in schema:
        if field.name in OWN_COLUMNS:
            columns.append(own.column(field.name).cast(field.type))
        else:
            columns.append(old.column(field.name).cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _with_now(table: pa.Table, now: datetime) -> pa.Table:
    """`age`, `recency_days` and RFM of every row computed again as of `now`, as `_profiles_of` computes them."""
    con = ibis.duckdb.connect()
    try:
        t = con.create_table("p", table.select(["person_id", "birthday", "last_order_at", "orders", "total_revenue"]))
        d = dialect_of(t)
        now_lit = ibis.literal(now, dt.Timestamp(timezone="UTC"))
        fresh = t.select(
            "person_id",
            age=B._age(t.birthday, now),
            recency_days=((d.epoch_seconds(now_lit) - d.epoch_seconds(t.last_order_at)) // 86400).cast("int64"),
        )
        buyers = t.filter(t.orders > 0)
        rfm = B._rfm(buyers)
        out = fresh.left_join(rfm, "person_id").drop("person_id_right").order_by("person_id")
        done = to_arrow(out)
    finally:
        con.disconnect()
    for name in ("age", "recency_days", "rfm_recency", "rfm_frequency", "rfm_monetary", "rfm_segment"):
        at = table.schema.get_field_index(name)
        field = table.schema.field(at)
        table = table.set_column(at, field, done.column(name).cast(field.type))
    return table


def finish(runtime: Runtime, table: pa.Table, now: datetime) -> pa.Table:
    """What a build does after its parts (both ways): the best hour scored, CLV, the recommendations."""
    return B.with_recommendations(runtime, B.with_clv(B._with_best_hour(table), now))


def forget(runtime: Runtime) -> None:
    """Drop the saved state's file list (before the profiles it describes are replaced): until a build saves
    a new state, the next build is a full one."""
    listing = _path(runtime, FILES)
    if runtime.log.fs.exists(listing):
        runtime.log.fs.rm(listing)
