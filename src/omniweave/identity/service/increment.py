"""The daily increment of `resolve` on the array path: one new day walked onto the persons it touches.

The full build (`identity.service.bulk`) re-derives the whole graph from every observation. When the new
events all sort after the last observation of the saved graph (a new day, in the canonical order) and
leave the demoted identifiers as they were, the object path (`Stitcher.add`) stitches them one by one
onto the graph it has, and so does this module, without reading the graph whole:

1. **new files only** — the state remembers the event files it has read (`files.parquet`, relative paths,
   with a fingerprint of the rules); only files not in it are read. When one of them holds an event at
   or before the graph's last observation (a compaction's merged file, a late event), the events are
   anti-joined with the saved observations first, as the full path does;
2. **checks** — the new observations (and this run's new probabilistic links) must sort after the graph's
   last observation, and the share limits must demote the same identifiers among the ones they touch
   (their co-occurrences are read from the saved observations that hold one of them). Otherwise this
   returns None and `resolve` runs the full build, as the object path re-derives;
3. **walk** — the persons of the identifiers the new observations touch are loaded from `nodes` and
   `founders` into a small `Stitcher`, which walks the new observations rule by rule (limits, splits,
   refusals; every merge of two existing persons is logged with its event);
4. **write** — `nodes` and `founders` with those persons replaced, `links`, `refusals` and `history`
   appended to, the new observations as a file of their own (`observations-<n>.parquet`, read with
   `observations.parquet` by every reader; the next full build folds them in), then `identities`.

The result is the graph a full build over all the events gives (tests/identity/test_increment.py).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import time
import uuid
from dataclasses import fields
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from omniweave.identity.graph import Observation, Rules, Split, Stitcher, person_id_for
from omniweave.identity.service import bulk
from omniweave.runtime import Runtime
from omniweave.storage.engine import memory_guard

FILES = "files.parquet"
"""The event files the saved graph has read, relative to the `events` folder (`rules` in its metadata)."""
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def rules_fingerprint(rules: Rules) -> str:
    """A digest of the rules (sets sorted): the increment continues only a graph made under the same rules."""

    def plain(value: Any) -> Any:
        if isinstance(value, set | frozenset):
            return sorted(plain(v) for v in value)
        if isinstance(value, dict) or hasattr(value, "items"):
            return {str(k): plain(v) for k, v in sorted(value.items())}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    text = json.dumps({f.name: plain(getattr(rules, f.name)) for f in fields(rules)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def relative(runtime: Runtime, path: str) -> str:
    """An event file's path relative to the `events` folder (the home may move)."""
    return posixpath.relpath(path, runtime.log.dataset_path("events"))


def write_files(runtime: Runtime, files: list[str], rules: Rules) -> None:
    """Record the event files the saved graph has read (after the rest of the state)."""
    from omniweave.identity.service.resolve import _write

    table = pa.table({"path": pa.array(sorted(relative(runtime, f) for f in files), pa.string())})
    table = table.replace_schema_metadata({"rules": rules_fingerprint(rules)})
    _write(runtime.log, posixpath.join(runtime.log.dataset_path("identity_state"), FILES), table)


def read_files(runtime: Runtime, rules: Rules) -> set[str] | None:
    """The event files the saved graph has read, or None (none recorded, or recorded under other rules)."""
    path = posixpath.join(runtime.log.dataset_path("identity_state"), FILES)
    if not runtime.log.fs.exists(path):
        return None
    with runtime.log.fs.open(path, "rb") as fh:
        table = pq.read_table(fh)
    meta = table.schema.metadata or {}
    if meta.get(b"rules", b"").decode() != rules_fingerprint(rules):
        return None
    return set(table.column("path").to_pylist())


RECORDS = "records.parquet"
"""The raw identity records of the events the saved graph has read (`resolve.record_table`), for the
probabilistic tier: the increment reads the new day's records only and merges them with these."""
COOC = "cooc.parquet"
"""The share limits' co-occurrences of the saved graph: (ikind, ivalue, jkind, jvalue), each identifier with
every distinct user id or e-mail (any watched kind) seen in one event with it (`bulk._COOC_SQL`)."""


def records_path(runtime: Runtime) -> str | None:
    """The saved raw identity records (None if there are none, or the state is not local)."""
    path = posixpath.join(runtime.log.dataset_path("identity_state"), RECORDS)
    return path if bulk._local(runtime.log) and runtime.log.fs.exists(path) else None


def write_records(runtime: Runtime, raw: pa.Table | None, fresh: bool) -> None:
    """Save the raw identity records of every event read so far (before `write_files`: a crash in between
    leaves records the next run merges again, which changes nothing). Without `raw` they were not refreshed:
    unless nothing new was read (`fresh`), the saved ones no longer cover the log and are dropped."""
    from omniweave.identity.service.resolve import _write

    path = posixpath.join(runtime.log.dataset_path("identity_state"), RECORDS)
    if raw is not None:
        _write(runtime.log, path, raw)
    elif not fresh and runtime.log.fs.exists(path):
        runtime.log.fs.rm(path)


def run(
    runtime: Runtime,
    rules: Rules,
    summary: Any,
    console: Any,
    files: list[str],
    probabilistic: bool,
    threshold: float,
) -> Stitcher | None:
    """The increment (module docstring), or None when it does not apply (nothing of the state changed then)."""
    consumed = read_files(runtime, rules)
    observed = bulk.observation_files(runtime)
    last = _last_key(runtime)
    if consumed is None or not observed or last is None or not bulk._local(runtime.log):
        return None
    if not all(
        runtime.log.fs.exists(posixpath.join(runtime.log.dataset_path("identity_state"), f"{t}.parquet"))
        for t in ("nodes", "founders", "history", "cooc")
    ):
        return None
    spill = bulk.Spill(runtime.settings.home)
    g = bulk.Graph(runtime, rules)
    try:
        with memory_guard("resolve", runtime.engine.memory_limit):
            return _run(runtime, g, spill, summary, console, files, consumed, observed, last, probabilistic, threshold)
    finally:
        g.close()
        spill.remove()


def _last_key(runtime: Runtime) -> tuple[str, str] | None:
    path = posixpath.join(runtime.log.dataset_path("identity_state"), "meta.parquet")
    if not runtime.log.fs.exists(path) or "last_timestamp" not in pq.read_schema(path).names:
        return None
    row = pq.read_table(path).to_pylist()[0]
    if row.get("last_timestamp") is None:
        return None
    return (str(row["last_timestamp"]), str(row["last_message_id"]))


def _meta_observations(runtime: Runtime) -> int | None:
    path = posixpath.join(runtime.log.dataset_path("identity_state"), "meta.parquet")
    names = pq.read_schema(path).names
    if "observations" not in names:
        return None
    value = pq.read_table(path).column("observations")[0].as_py()
    return int(value) if value is not None else None


def _has_late(runtime: Runtime, files: list[str], last_ts: str) -> bool:
    """Whether any of these event files holds an event at or before `last_ts` (seen already, or late)."""
    warehouse = runtime.warehouse()
    warehouse.con.create_view("identity_late", warehouse.files_table("events", files), overwrite=True)
    rows = warehouse.rows(
        f"SELECT count(*) AS n FROM identity_late WHERE strftime(timestamp, '{TS_FORMAT}') <= '{last_ts}'"
    )
    return bool(rows and rows[0]["n"])


def _run(
    runtime: Runtime,
    g: bulk.Graph,
    spill: bulk.Spill,
    summary: Any,
    console: Any,
    files: list[str],
    consumed: set[str],
    observed: list[str],
    last: tuple[str, str],
    probabilistic: bool,
    threshold: float,
) -> Stitcher | None:
    from omniweave.identity.service.resolve import merge_records, probabilistic_links, record_table

    started = time.perf_counter()
    rules = g.rules
    new_files = [f for f in files if relative(runtime, f) not in consumed]
    seen_glob = posixpath.join(g.state, "observations*.parquet")
    max_ts: str | None = None
    if new_files:
        seen = seen_glob if _has_late(runtime, new_files, last[0]) else None
        extracted = bulk.extract(runtime, rules, summary, spill, seen, new_files)
        max_ts = extracted.max_ts
    if console:
        console.print(f"resolving identities: {summary.events:,} new events in {len(new_files):,} new files")
    obs_list = _files_sql(observed)
    ids, msgs = spill.glob("ids"), spill.glob("msgs")
    g.execute(
        "CREATE TEMP TABLE new_ids AS "
        + (
            f"SELECT DISTINCT m.message_id, i.kind, i.value FROM read_parquet('{ids}') i "
            f"JOIN read_parquet('{msgs}') m USING (ev) WHERE i.kind IS NOT NULL"
            if ids and msgs
            else "SELECT ''::VARCHAR AS message_id, ''::VARCHAR AS kind, ''::VARCHAR AS value WHERE false"
        )
    )
    g.execute(
        "CREATE TEMP TABLE new_msgs AS SELECT message_id, min(timestamp) AS ts "
        + (
            f"FROM read_parquet('{msgs}') GROUP BY message_id"
            if msgs
            else "FROM (SELECT ''::VARCHAR AS message_id, ''::VARCHAR AS timestamp) WHERE false GROUP BY message_id"
        )
    )
    first = _one(g, "SELECT ts, message_id FROM new_msgs ORDER BY ts, message_id LIMIT 1")
    if first is not None and (first[0], first[1]) <= last:
        return None  # a late event: the full build re-derives, as the object path does
    links: list[Observation] = []
    raw: pa.Table | None = None
    if probabilistic and (summary.events or not _has_probabilistic(g, obs_list)):
        saved = records_path(runtime)
        raw = record_table(runtime, new_files if saved else None)
        if saved:
            raw = merge_records(saved, raw)
        bulk._say(console, f"increment: {raw.num_rows:,} identity records", started)
        found = probabilistic_links(runtime, threshold, rules, raw)
        summary.probabilistic_links = len(found)
        if console:
            console.print(f"probabilistic matching: {len(found):,} links at p ≥ {threshold}")
        stamp = max(t for t in (max_ts, last[0]) if t)
        links = _unseen(g, obs_list, [link.observation(stamp) for link in found])
        if links and min(o.key for o in links) <= last:
            return None
    rows = [(o.message_id, o.key[0], k, v) for o in links for k, v in o.identifiers]
    g.duck.register(
        "link_arrow",
        pa.table(
            {n: [r[i] for r in rows] for i, n in enumerate(("message_id", "ts", "kind", "value"))},
            schema=pa.schema([(c, pa.string()) for c in ("message_id", "ts", "kind", "value")]),
        ),
    )
    g.execute("INSERT INTO new_ids SELECT DISTINCT message_id, kind, value FROM link_arrow")
    g.execute("INSERT INTO new_msgs SELECT message_id, min(ts) FROM link_arrow GROUP BY message_id")
    if not _one(g, "SELECT count(*) FROM new_msgs")[0]:  # type: ignore[index]
        write_records(runtime, raw, fresh=True)
        write_files(runtime, files, rules)  # nothing new (a compaction's merged file, say): the graph stays
        _counts(runtime, g, summary)
        return Stitcher(rules)
    g.execute("CREATE TEMP TABLE touched AS SELECT DISTINCT kind, value FROM new_ids")
    if not _same_demotion(g, rules):
        return None
    bulk._say(console, "increment: demoted identifiers unchanged", started)
    sub = _walk(g, rules, obs_list)
    bulk._say(console, f"increment: walked onto {len(sub.members):,} persons", started)
    _write(runtime, g, spill, sub, summary, files, last, raw)
    bulk._say(console, "increment: state saved", started)
    return sub


def _one(g: bulk.Graph, query: str) -> Any:
    """The first row of `query` (None if none), the result fetched whole (DuckDB holds an unfinished one)."""
    rows = g.duck.execute(query).fetchall()
    return rows[0] if rows else None


def _files_sql(paths: list[str]) -> str:
    return "read_parquet([" + ", ".join(f"'{p}'" for p in paths) + "], union_by_name = true)"


def _has_probabilistic(g: bulk.Graph, obs: str) -> bool:
    row = _one(g, f"SELECT count(*) FROM {obs} WHERE message_id LIKE 'probabilistic:%'")
    return bool(row and row[0])


def _unseen(g: bulk.Graph, obs: str, links: list[Observation]) -> list[Observation]:
    """The links the graph does not hold yet (one seen before keeps its first time, as `Stitcher.add` unites)."""
    if not links:
        return []
    g.duck.register("offered", pa.table({"message_id": pa.array([o.message_id for o in links], pa.string())}))
    known = {
        r[0]
        for r in g.duck.execute(
            f"SELECT DISTINCT message_id FROM {obs} WHERE message_id LIKE 'probabilistic:%' "
            "AND message_id IN (SELECT message_id FROM offered)"
        ).fetchall()
    }
    return [o for o in links if o.message_id not in known]


def _same_demotion(g: bulk.Graph, rules: Rules) -> bool:
    """Whether the new observations leave the share limits' verdict on every identifier they touch as it was
    (only a touched identifier's co-occurrences change): the saved co-occurrences of the touched identifiers,
    without and with the new ones."""
    kinds = list(rules.priorities) + sorted(
        {r[0] for r in g.duck.execute("SELECT DISTINCT kind FROM touched").fetchall()} - set(rules.priorities)
    )
    g.duck.register("share_arrow", bulk._share_table(rules, kinds))
    g.execute("CREATE TEMP TABLE share AS SELECT * FROM share_arrow")
    g.execute(
        f"""CREATE TEMP TABLE cooc_touched AS
        SELECT ikind, ivalue, jkind, jvalue FROM read_parquet('{posixpath.join(g.state, COOC)}') c
        SEMI JOIN touched t ON c.ikind = t.kind AND c.ivalue = t.value"""
    )
    g.execute(bulk._COOC_SQL.format(name="new_cooc", ids="new_ids", key="message_id"))
    g.execute(bulk._DEMOTED_FROM_COOC.format(name="demoted_before", cooc="cooc_touched"))
    g.execute("CREATE TEMP TABLE cooc_after AS SELECT * FROM cooc_touched UNION SELECT * FROM new_cooc")
    g.execute(bulk._DEMOTED_FROM_COOC.format(name="demoted_after", cooc="cooc_after"))
    changed = _one(
        g,
        """SELECT count(*) FROM ((SELECT * FROM demoted_after EXCEPT SELECT * FROM demoted_before)
        UNION ALL (SELECT * FROM demoted_before EXCEPT SELECT * FROM demoted_after))""",
    )
    return not (changed and changed[0])


def _walk(g: bulk.Graph, rules: Rules, obs: str) -> Stitcher:
    """The new observations stitched rule by rule onto the persons they touch (as `Stitcher.add` does)."""
    nodes, founders = (posixpath.join(g.state, f"{t}.parquet") for t in ("nodes", "founders"))
    g.execute(
        f"""CREATE TEMP TABLE touched_roots AS
        SELECT DISTINCT root_kind, root_value FROM read_parquet('{nodes}') SEMI JOIN touched USING (kind, value)"""
    )
    sub = Stitcher(rules)
    sub.splits = _splits(g)
    sub._reset()
    members = g.duck.execute(
        f"SELECT kind, value, root_kind, root_value FROM read_parquet('{nodes}') "
        "SEMI JOIN touched_roots USING (root_kind, root_value)"
    ).fetchall()
    for kind, value, root_kind, root_value in members:
        root = (root_kind, root_value)
        sub.parent[(kind, value)] = root
        sub.members.setdefault(root, {}).setdefault(kind, set()).add(value)
    rows = g.duck.execute(
        "SELECT root_kind, root_value, key_timestamp, key_message_id, kind, value, person_id "
        f"FROM read_parquet('{founders}') SEMI JOIN touched_roots USING (root_kind, root_value)"
    ).fetchall()
    for root_kind, root_value, key_ts, key_mid, kind, value, person_id in rows:
        sub.founder[(root_kind, root_value)] = ((key_ts, key_mid), (kind, value))
        if person_id != person_id_for((kind, value)):  # an id a split moved (Stitcher.assign_split_ids)
            sub._ids[(kind, value)] = person_id
    sub.demoted = frozenset((k, v) for k, v in g.duck.execute("SELECT kind, value FROM demoted_after").fetchall())
    new = g.duck.execute(
        """SELECT m.message_id, m.ts, list(i.kind ORDER BY i.kind, i.value) FILTER (WHERE i.kind IS NOT NULL),
                  list(i.value ORDER BY i.kind, i.value) FILTER (WHERE i.kind IS NOT NULL)
        FROM new_msgs m LEFT JOIN new_ids i USING (message_id) GROUP BY m.message_id, m.ts ORDER BY m.ts, m.message_id"""
    ).fetchall()
    for mid, ts, kinds, values in new:
        sub._stitch(Observation(mid, ts, tuple(zip(kinds or [], values or [], strict=True))))
    return sub


def _splits(g: bulk.Graph) -> list[Split]:
    path = g.state_file("splits")
    if not path or "person_id" not in pq.read_schema(path).names:
        return []
    return [
        Split(r["person_id"], (r["kind"], r["value"]), (r["anchor_kind"], r["anchor_value"]))
        for r in pq.read_table(path).to_pylist()
    ]


_REFUSALS = pa.schema([(c, pa.string()) for c in ("a_kind", "a_value", "b_kind", "b_value", "message_id", "rule")])


def _write(
    runtime: Runtime,
    g: bulk.Graph,
    spill: bulk.Spill,
    sub: Stitcher,
    summary: Any,
    files: list[str],
    last: tuple[str, str],
    raw: pa.Table | None,
) -> None:
    """Nodes, founders, links, refusals, history, aliases and `identities`, meta, the observations, the
    co-occurrences, the identity records, the files."""
    from omniweave.identity.service.resolve import _write as write_table

    state = g.state

    def path(name: str) -> str:
        return posixpath.join(state, f"{name}.parquet")

    g.duck.register("walked_nodes", bulk._nodes_table(sub, None))
    g.duck.register("walked_founders", bulk._founders_table(sub))
    bulk._copy(
        g,
        f"""SELECT * FROM read_parquet('{path("nodes")}') ANTI JOIN touched_roots USING (root_kind, root_value)
        UNION ALL SELECT * FROM walked_nodes""",
        path("nodes"),
    )
    bulk._copy(
        g,
        f"""SELECT root_kind, root_value, key_timestamp, key_message_id, kind, value, person_id
        FROM read_parquet('{path("founders")}') ANTI JOIN touched_roots USING (root_kind, root_value)
        UNION ALL SELECT * FROM walked_founders""",
        path("founders"),
    )
    link_rows = sub.state()["links"]
    g.duck.register(
        "new_links", pa.Table.from_pylist(link_rows, schema=bulk._LINKS) if link_rows else bulk._LINKS.empty_table()
    )
    _append(g, path("links"), "new_links", bulk._LINKS)
    refusal_rows = sub.state()["refusals"]
    g.duck.register(
        "new_refusals",
        pa.Table.from_pylist(refusal_rows, schema=_REFUSALS) if refusal_rows else _REFUSALS.empty_table(),
    )
    _append(g, path("refusals"), "new_refusals", _REFUSALS)
    _write_history(g, sub, path("history"))
    g.execute(
        f"""CREATE TEMP TABLE node_person AS
        SELECT n.kind, n.value, f.person_id FROM read_parquet('{path("nodes")}') n
        JOIN read_parquet('{path("founders")}') f ON f.root_kind = n.root_kind AND f.root_value = n.root_value"""
    )
    bulk._write_aliases(g, spill)
    new_count = int(_one(g, "SELECT count(*) FROM new_msgs")[0])  # type: ignore[index]
    top = _one(g, "SELECT ts, message_id FROM new_msgs ORDER BY ts DESC, message_id DESC LIMIT 1")
    key = max(last, (top[0], top[1])) if top else last
    before = _meta_observations(runtime)
    if before is None:
        row = _one(g, f"SELECT count(DISTINCT message_id) FROM {_files_sql(bulk.observation_files(runtime))}")
        before = int(row[0]) if row else 0
    summary.observations = before + new_count
    write_table(
        g.log,
        path("meta"),
        pa.table(
            {"last_timestamp": [key[0]], "last_message_id": [key[1]], "observations": [summary.observations]},
            schema=pa.schema(
                [("last_timestamp", pa.string()), ("last_message_id", pa.string()), ("observations", pa.int64())]
            ),
        ),
    )
    if new_count:
        delta = path(f"{bulk.DELTA_PREFIX}{time.time_ns():020d}-{uuid.uuid4().hex[:8]}")
        bulk._copy(
            g,
            """SELECT m.message_id, m.ts AS timestamp, i.kind, i.value FROM new_msgs m LEFT JOIN new_ids i
            USING (message_id) ORDER BY m.ts, m.message_id, i.kind, i.value""",
            delta,
        )
    bulk._copy(
        g,
        f"""SELECT ikind, ivalue, jkind, jvalue FROM read_parquet('{path("cooc")}')
        UNION ALL (SELECT * FROM new_cooc EXCEPT SELECT * FROM cooc_touched)""",
        path("cooc"),
    )
    write_records(runtime, raw, fresh=False)
    write_files(runtime, files, g.rules)
    summary.merges = sum(1 for link in sub.links if link.merged)
    summary.refused = len(sub.refusals)
    _counts(runtime, g, summary)


def _counts(runtime: Runtime, g: bulk.Graph, summary: Any) -> None:
    """The graph's identifiers, persons and demoted identifiers, from the saved state."""
    summary.identifiers = pq.ParquetFile(posixpath.join(g.state, "nodes.parquet")).metadata.num_rows
    summary.persons = pq.ParquetFile(posixpath.join(g.state, "founders.parquet")).metadata.num_rows
    if not summary.observations:
        summary.observations = _meta_observations(runtime) or 0
    demoted = g.state_file("demoted")
    if demoted and "kind" in pq.read_schema(demoted).names:
        summary.demoted = sorted((r["kind"], r["value"]) for r in pq.read_table(demoted).to_pylist())


def _append(g: bulk.Graph, final: str, new: str, schema: pa.Schema) -> None:
    """`final` (a state table) with the rows of the registered table `new` after its own."""
    columns = ", ".join(schema.names)
    old = final if g.log.fs.exists(final) and schema.names[0] in pq.read_schema(final).names else None
    query = f"SELECT {columns} FROM {new}"
    if old:
        cast = ", ".join(f"CAST({c} AS VARCHAR) AS {c}" for c in schema.names)
        query = f"SELECT {cast} FROM read_parquet('{old}') UNION ALL " + query
    bulk._copy(g, query, final)


def _write_history(g: bulk.Graph, sub: Stitcher, final: str) -> None:
    """The old history with this walk's merges (absorbed id → survivor) and the person ids it gave."""
    g.duck.register(
        "walked_history",
        pa.table(
            {
                "person_id": list(sub.history),
                "kind": [f[0] for f in sub.history.values()],
                "value": [f[1] for f in sub.history.values()],
            },
            schema=pa.schema([(c, pa.string()) for c in ("person_id", "kind", "value")]),
        ),
    )
    g.duck.register(
        "walked_merges",
        pa.table(
            {"person_id": list(sub.merged_into), "merged_into": list(sub.merged_into.values())},
            schema=pa.schema([("person_id", pa.string()), ("merged_into", pa.string())]),
        ),
    )
    bulk._copy(
        g,
        f"""WITH old AS (SELECT person_id, kind, value, CAST(merged_into AS VARCHAR) AS merged_into
                         FROM read_parquet('{final}'))
        SELECT o.person_id, o.kind, o.value, coalesce(m.merged_into, o.merged_into) AS merged_into
        FROM old o LEFT JOIN walked_merges m USING (person_id)
        UNION ALL
        SELECT w.person_id, w.kind, w.value, m.merged_into
        FROM (SELECT * FROM walked_history ANTI JOIN old USING (person_id)) w LEFT JOIN walked_merges m USING (person_id)""",
        final,
    )
