"""The SQL of the journey engine: versions, runs, waits, entries and step history (SQLAlchemy Core).

Every change of a run is one statement guarded by what the caller expects (its lease, its status),
so a worker whose lease ran out and was taken over changes nothing. Claiming due runs is
`SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL (several workers take disjoint batches) and a plain
guarded UPDATE on SQLite (one writer). A lease (`lease_owner`, `lease_until`) that ran out makes a
killed worker's runs claimable again: no run is lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from omniweave.storage.ops.among import among
from omniweave.storage.ops.tables.journeys import (
    journey_entries,
    journey_runs,
    journey_steps,
    journey_versions,
    journey_waits,
)
from omniweave.storage.ops.unnest import insert_unnest, unnest_params

ACTIVE = ("active", "waiting")
ENDED = ("done", "converted", "exited", "failed")
_CHUNK = 500


def _insert_ignore(conn: sa.Connection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    return table.insert()


# --- versions -------------------------------------------------------------------------------------


def publish_version(
    conn: sa.Connection, journey: str, definition: bytes, checksum: str, now: float, note: str | None = None
) -> tuple[int, bool]:
    """(version, created): a new version unless the latest one has the same checksum."""
    latest = conn.execute(
        sa.select(journey_versions.c.version, journey_versions.c.checksum)
        .where(journey_versions.c.journey == journey)
        .order_by(journey_versions.c.version.desc())
        .limit(1)
    ).first()
    if latest is not None and latest[1] == checksum:
        return int(latest[0]), False
    version = 1 if latest is None else int(latest[0]) + 1
    conn.execute(
        journey_versions.insert().values(
            journey=journey, version=version, definition=definition, checksum=checksum, published_at=now, note=note
        )
    )
    return version, True


def latest_versions(conn: sa.Connection) -> dict[str, tuple[int, bytes]]:
    """Every journey's newest version: name -> (version, definition)."""
    newest = (
        sa.select(journey_versions.c.journey, sa.func.max(journey_versions.c.version).label("v"))
        .group_by(journey_versions.c.journey)
        .subquery()
    )
    rows = conn.execute(
        sa.select(journey_versions.c.journey, journey_versions.c.version, journey_versions.c.definition).join(
            newest, sa.and_(journey_versions.c.journey == newest.c.journey, journey_versions.c.version == newest.c.v)
        )
    )
    return {str(j): (int(v), bytes(d)) for j, v, d in rows}


def version_definition(conn: sa.Connection, journey: str, version: int) -> bytes | None:
    found = conn.execute(
        sa.select(journey_versions.c.definition).where(
            journey_versions.c.journey == journey, journey_versions.c.version == version
        )
    ).first()
    return None if found is None else bytes(found[0])


def waiting_at(conn: sa.Connection, journey: str, nodes: Sequence[str] | None) -> dict[str, int]:
    """How many runs of `journey` that have not ended are at each of `nodes` (None: at every node)."""
    query = sa.select(journey_runs.c.node, sa.func.count()).where(
        journey_runs.c.journey == journey, journey_runs.c.status.in_(ACTIVE)
    )
    if nodes is not None:
        query = query.where(journey_runs.c.node.in_(nodes))
    rows = conn.execute(query.group_by(journey_runs.c.node))
    return {str(n): int(c) for n, c in rows}


def move_runs(conn: sa.Connection, journey: str, mapping: Mapping[str, str], version: int, now: float) -> int:
    """Move the unfinished runs of `journey` at each old node to its mapped node on `version`; how many moved.
    A waiting run's wait is dropped and the run made due now at its new node."""
    moved = 0
    for old, new in mapping.items():
        ids = [
            r[0]
            for r in conn.execute(
                sa.select(journey_runs.c.id).where(
                    journey_runs.c.journey == journey, journey_runs.c.node == old, journey_runs.c.status.in_(ACTIVE)
                )
            )
        ]
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            conn.execute(journey_waits.delete().where(journey_waits.c.run_id.in_(chunk)))
            result = conn.execute(
                journey_runs.update()
                .where(journey_runs.c.id.in_(chunk))
                .values(node=new, version=version, status="active", wake_at=now, updated_at=now)
            )
            moved += int(result.rowcount or 0)
    return moved


# --- entering -------------------------------------------------------------------------------------


def enter(
    conn: sa.Connection,
    run: Mapping[str, Any],
    *,
    mode: str,
    cooldown: float,
    max_entries: int | None,
    now: float,
) -> tuple[bool, str]:
    """Start one run (id, journey, version, person_id, entry_key, node, context, entered_at) if the re-entry
    rules allow; (started, reason). A replayed entry key hits the unique key and starts nothing."""
    journey, person = run["journey"], run["person_id"]
    if conn.execute(sa.select(journey_runs.c.id).where(journey_runs.c.id == run["id"])).first() is not None:
        return False, "this trigger already started a run"
    seen = conn.execute(
        sa.select(journey_entries.c.count, journey_entries.c.last_entered_at).where(
            journey_entries.c.journey == journey, journey_entries.c.person_id == person
        )
    ).first()
    if seen is not None:
        count, last = int(seen[0]), float(seen[1])
        if mode == "never":
            return False, "re-entry never: the person entered before"
        if max_entries is not None and count >= max_entries:
            return False, f"the person entered {count} times (max_entries {max_entries})"
        if mode == "after" and now - last < cooldown:
            return False, f"re-entry after {cooldown:g}s: last entry {now - last:.0f}s ago"
    values = {
        **run,
        "context": orjson.dumps(run.get("context") or {}),
        "status": "active",
        "wake_at": run.get("wake_at", now),
        "updated_at": now,
    }
    result = conn.execute(_insert_ignore(conn, journey_runs).values(**values))
    if not result.rowcount:
        return False, "this trigger already started a run"
    if seen is None:
        conn.execute(
            _insert_ignore(conn, journey_entries).values(
                journey=journey, person_id=person, count=1, last_entered_at=now
            )
        )
    else:
        conn.execute(
            journey_entries.update()
            .where(journey_entries.c.journey == journey, journey_entries.c.person_id == person)
            .values(count=journey_entries.c.count + 1, last_entered_at=now)
        )
    return True, "entered"


def enter_many(
    conn: sa.Connection, items: Sequence[tuple[Mapping[str, Any], str, float, int | None]], now: float
) -> list[bool]:
    """`enter` for many runs, each (run, mode, cooldown, max_entries), in a few statements: the run ids and the
    (journey, person) entry counts read in one query each, the re-entry rules applied in order (a run entered
    earlier in the batch counts), the new runs and the entry counts written with executemany."""
    ids = [str(run["id"]) for run, _, _, _ in items]
    there: set[str] = set()
    for start in range(0, len(ids), _CHUNK):
        part = ids[start : start + _CHUNK]
        found = conn.execute(sa.select(journey_runs.c.id).where(among(conn, journey_runs.c.id, part)))
        there.update(str(i) for (i,) in found)
    by_journey: dict[str, set[str]] = {}
    for run, _, _, _ in items:
        by_journey.setdefault(str(run["journey"]), set()).add(str(run["person_id"]))
    seen: dict[tuple[str, str], tuple[int, float]] = {}
    for name, people in sorted(by_journey.items()):  # journey = … AND person_id IN (…): the primary key's range
        persons = sorted(people)
        for start in range(0, len(persons), _CHUNK):
            rows = conn.execute(
                sa.select(
                    journey_entries.c.journey,
                    journey_entries.c.person_id,
                    journey_entries.c.count,
                    journey_entries.c.last_entered_at,
                ).where(
                    journey_entries.c.journey == name,
                    among(conn, journey_entries.c.person_id, persons[start : start + _CHUNK]),
                )
            )
            seen.update({(str(j), str(p)): (int(c), float(t)) for j, p, c, t in rows})
    known = set(seen)
    out: list[bool] = []
    runs: list[dict[str, Any]] = []
    counts: dict[tuple[str, str], int] = {}
    for run, mode, cooldown, max_entries in items:
        pair = (str(run["journey"]), str(run["person_id"]))
        ok = str(run["id"]) not in there
        if ok and pair in seen:
            count, last = seen[pair]
            ok = mode != "never" and (max_entries is None or count < max_entries)
            ok = ok and not (mode == "after" and now - last < cooldown)
        out.append(ok)
        if ok:
            there.add(str(run["id"]))
            seen[pair] = (seen.get(pair, (0, now))[0] + 1, now)
            counts[pair] = counts.get(pair, 0) + 1
            runs.append(
                {
                    **run,
                    "context": orjson.dumps(run.get("context") or {}),
                    "status": "active",
                    "wake_at": run.get("wake_at", now),
                    "updated_at": now,
                }
            )
    if runs:
        conn.execute(_insert_ignore(conn, journey_runs), runs)
    fresh = [
        {"journey": j, "person_id": p, "count": n, "last_entered_at": now}
        for (j, p), n in counts.items()
        if (j, p) not in known
    ]
    if fresh:
        conn.execute(_insert_ignore(conn, journey_entries), fresh)
    more = [{"j": j, "p": p, "n": n, "now": now} for (j, p), n in counts.items() if (j, p) in known]
    if more:
        conn.execute(
            journey_entries.update()
            .where(journey_entries.c.journey == sa.bindparam("j"), journey_entries.c.person_id == sa.bindparam("p"))
            .values(count=journey_entries.c.count + sa.bindparam("n"), last_entered_at=sa.bindparam("now")),
            more,
        )
    return out


def refresh_statistics(conn: sa.Connection) -> None:
    """PostgreSQL: ANALYZE the run tables. After a bulk entry the planner's row counts are far off until
    autovacuum comes round, and it plans scans where the keys would do (entering 100,000 persons slowed
    to ~170 runs/s at 50,000; ~2,000/s after an ANALYZE). Elsewhere nothing."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("ANALYZE journey_runs, journey_entries, journey_steps"))


# --- claiming and saving --------------------------------------------------------------------------


def _dicts(result: sa.CursorResult[Any]) -> Iterator[dict[str, Any]]:
    """The rows of `result` as dicts (`dict(row_mapping)` builds the key view again for every row: slow)."""
    keys = list(result.keys())
    for row in result:
        yield dict(zip(keys, row, strict=True))


def claim_due(conn: sa.Connection, owner: str, now: float, lease: float, limit: int) -> list[dict[str, Any]]:
    """Take up to `limit` due runs (active or waiting with `wake_at` <= now, no live lease) for `owner`."""
    due = (
        sa.select(journey_runs.c.id)
        .where(
            journey_runs.c.status.in_(ACTIVE),
            journey_runs.c.wake_at <= now,
            sa.or_(journey_runs.c.lease_until.is_(None), journey_runs.c.lease_until < now),
        )
        .order_by(journey_runs.c.wake_at)
        .limit(limit)
    )
    free = sa.or_(journey_runs.c.lease_until.is_(None), journey_runs.c.lease_until < now)
    if conn.dialect.name == "postgresql":  # one round trip: the rows locked, skipped by others, leased, returned
        # one locking scan per status, each in `journey_runs_due` (status, wake_at) order and stopped at `limit`,
        # the two merged by wake_at: with `status IN (…)` the planner sorted every due run before it locked any
        # (LockRows between the Sort and the Limit: no top-N), so each claim of a 100,000-run drain scanned and
        # sorted all 100,000 (157 ms a claim, on disk) — the drain grew with the square of the backlog
        per_status = [
            sa.select(journey_runs.c.id, journey_runs.c.wake_at)
            .where(journey_runs.c.status == status, journey_runs.c.wake_at <= now, free)
            .order_by(journey_runs.c.wake_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .subquery()
            for status in ACTIVE
        ]
        merged = sa.union_all(*(sa.select(s.c.id, s.c.wake_at) for s in per_status)).subquery()
        picked = sa.select(merged.c.id).order_by(merged.c.wake_at).limit(limit).scalar_subquery()
        result = conn.execute(
            journey_runs.update()
            .where(journey_runs.c.id.in_(picked), free)
            .values(lease_owner=owner, lease_until=now + lease)
            .returning(*journey_runs.c)
        )
    else:
        ids = [r[0] for r in conn.execute(due)]
        if not ids:
            return []
        result = conn.execute(
            journey_runs.update()
            .where(journey_runs.c.id.in_(ids), free)
            .values(lease_owner=owner, lease_until=now + lease)
            .returning(*journey_runs.c)
        )
    out = []
    for row in _dicts(result):
        row["context"] = orjson.loads(row["context"])
        out.append(row)
    return out


def save_run(conn: sa.Connection, run_id: str, owner: str, values: Mapping[str, Any]) -> bool:
    """Write a run's new state if `owner` still holds its lease; False when someone took it over."""
    changes = dict(values)
    if "context" in changes:
        changes["context"] = orjson.dumps(changes["context"])
    result = conn.execute(
        journey_runs.update().where(journey_runs.c.id == run_id, journey_runs.c.lease_owner == owner).values(**changes)
    )
    return bool(result.rowcount == 1)


_SAVED = ("node", "status", "wake_at", "context", "variant", "end_reason", "ended_at", "updated_at")


def holds_leases(conn: sa.Connection, owner: str, run_ids: Sequence[str]) -> bool:
    """Whether `owner` still holds the lease of every run of `run_ids`."""
    held = 0
    for start in range(0, len(run_ids), _CHUNK):
        chunk = list(run_ids[start : start + _CHUNK])
        held += int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(journey_runs)
                .where(among(conn, journey_runs.c.id, chunk), journey_runs.c.lease_owner == owner)
            ).scalar_one()
        )
    return held == len(set(run_ids))


_STEPS = ("run_id", "journey", "version", "person_id", "node", "outcome", "reason", "at")
_STEPS_UNNEST = insert_unnest(journey_steps, _STEPS)  # PostgreSQL: one statement for a batch (storage/ops/unnest.py)


def save_runs(conn: sa.Connection, owner: str, rows: Sequence[Mapping[str, Any]], *, keep_lease: bool = False) -> None:
    """Write many runs' new state (each: id and every column of `_SAVED`) in one statement; the leases are
    given back unless `keep_lease`."""
    if not rows:
        return
    values: dict[str, Any] = {c: sa.bindparam(f"v_{c}") for c in _SAVED}
    if not keep_lease:
        values |= {"lease_owner": None, "lease_until": None}
    statement = (
        journey_runs.update()
        .where(journey_runs.c.id == sa.bindparam("v_id"), journey_runs.c.lease_owner == owner)
        .values(**values)
    )
    params = []
    for row in rows:
        one = {f"v_{c}": row.get(c) for c in _SAVED}
        one["v_context"] = orjson.dumps(row.get("context") or {})
        one["v_id"] = row["id"]
        params.append(one)
    conn.execute(statement, params)


def park_waits(conn: sa.Connection, waits: Sequence[tuple[str, str, str, str | None, str | None, float]]) -> None:
    """`park_wait` for many (run_id, person_id, event, property, value, until)."""
    if not waits:
        return
    ids = [w[0] for w in waits]
    for start in range(0, len(ids), _CHUNK):
        conn.execute(journey_waits.delete().where(among(conn, journey_waits.c.run_id, ids[start : start + _CHUNK])))
    conn.execute(
        journey_waits.insert(),
        [
            {"run_id": r, "person_id": p, "event": e, "corr_property": k, "corr_value": v, "until": u}
            for r, p, e, k, v, u in waits
        ],
    )


def release(conn: sa.Connection, run_ids: Sequence[str], owner: str) -> None:
    """Give back the leases of runs left as they are."""
    for start in range(0, len(run_ids), _CHUNK):
        conn.execute(
            journey_runs.update()
            .where(among(conn, journey_runs.c.id, run_ids[start : start + _CHUNK]), journey_runs.c.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )


def next_wake(conn: sa.Connection) -> float | None:
    """When the earliest unfinished run is due."""
    value = conn.execute(
        sa.select(sa.func.min(journey_runs.c.wake_at)).where(journey_runs.c.status.in_(ACTIVE))
    ).scalar()
    return None if value is None else float(value)


# --- waits ----------------------------------------------------------------------------------------


def park_wait(
    conn: sa.Connection, run_id: str, person_id: str, event: str, prop: str | None, value: str | None, until: float
) -> None:
    """Record that the run waits for `event` (with `prop` = `value`) until `until` (replacing an older wait)."""
    conn.execute(journey_waits.delete().where(journey_waits.c.run_id == run_id))
    conn.execute(
        journey_waits.insert().values(
            run_id=run_id, person_id=person_id, event=event, corr_property=prop, corr_value=value, until=until
        )
    )


def waits_for(conn: sa.Connection, person_id: str, event: str) -> list[dict[str, Any]]:
    """The waits of `person_id` on `event`, with their run's journey, version, node, context."""
    query = (
        sa.select(
            journey_waits,
            journey_runs.c.journey,
            journey_runs.c.version,
            journey_runs.c.node,
            journey_runs.c.context,
        )
        .join(journey_runs, journey_runs.c.id == journey_waits.c.run_id)
        .where(
            journey_waits.c.person_id == person_id,
            journey_waits.c.event == event,
            journey_runs.c.status == "waiting",
        )
    )
    return [{**m, "context": orjson.loads(m["context"])} for m in _dicts(conn.execute(query))]


def waits_among(conn: sa.Connection, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """`waits_for` for many (person, event) pairs at once (one query per 500 persons): pair -> its waits."""
    wanted = set(pairs)
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    persons = sorted({p for p, _ in wanted})
    events = sorted({e for _, e in wanted})
    for start in range(0, len(persons), _CHUNK):
        query = (
            sa.select(
                journey_waits,
                journey_runs.c.journey,
                journey_runs.c.version,
                journey_runs.c.node,
                journey_runs.c.context,
            )
            .join(journey_runs, journey_runs.c.id == journey_waits.c.run_id)
            .where(
                among(conn, journey_waits.c.person_id, persons[start : start + _CHUNK]),
                among(conn, journey_waits.c.event, events),
                journey_runs.c.status == "waiting",
            )
        )
        for m in _dicts(conn.execute(query)):
            pair = (str(m["person_id"]), str(m["event"]))
            if pair in wanted:
                out.setdefault(pair, []).append({**m, "context": orjson.loads(m["context"])})
    return out


def unfinished_among(
    conn: sa.Connection, persons: Iterable[str], journeys: Iterable[str]
) -> dict[str, list[dict[str, Any]]]:
    """`unfinished_of` for many persons at once: person -> their runs in `journeys` that have not ended."""
    names, people = sorted(set(journeys)), sorted(set(persons))
    out: dict[str, list[dict[str, Any]]] = {}
    if not names:
        return out
    for start in range(0, len(people), _CHUNK):
        query = sa.select(journey_runs).where(
            among(conn, journey_runs.c.person_id, people[start : start + _CHUNK]),
            among(conn, journey_runs.c.journey, names),
            journey_runs.c.status.in_(ACTIVE),
        )
        for m in _dicts(conn.execute(query)):
            out.setdefault(str(m["person_id"]), []).append({**m, "context": orjson.loads(m["context"])})
    return out


def wake(conn: sa.Connection, run_id: str, node: str, context: Mapping[str, Any], now: float) -> bool:
    """Make a waiting run (still at `node`) due now with `context`; drop its wait. False when it moved on."""
    result = conn.execute(
        journey_runs.update()
        .where(journey_runs.c.id == run_id, journey_runs.c.status == "waiting", journey_runs.c.node == node)
        .values(status="active", wake_at=now, context=orjson.dumps(dict(context)), updated_at=now)
    )
    if result.rowcount == 1:
        conn.execute(journey_waits.delete().where(journey_waits.c.run_id == run_id))
        return True
    return False


def unfinished_of(conn: sa.Connection, person_id: str, journeys: Iterable[str]) -> list[dict[str, Any]]:
    """The runs of `person_id` in `journeys` that have not ended."""
    names = list(journeys)
    if not names:
        return []
    query = sa.select(journey_runs).where(
        journey_runs.c.person_id == person_id, journey_runs.c.journey.in_(names), journey_runs.c.status.in_(ACTIVE)
    )
    return [{**m, "context": orjson.loads(m["context"])} for m in _dicts(conn.execute(query))]


def end_run(conn: sa.Connection, run_id: str, status: str, reason: str, now: float) -> bool:
    """End an unfinished run (a goal met from the trigger consumer); False when it had ended already."""
    result = conn.execute(
        journey_runs.update()
        .where(journey_runs.c.id == run_id, journey_runs.c.status.in_(ACTIVE))
        .values(status=status, end_reason=reason, ended_at=now, wake_at=None, updated_at=now)
    )
    if result.rowcount == 1:
        conn.execute(journey_waits.delete().where(journey_waits.c.run_id == run_id))
        return True
    return False


# --- history --------------------------------------------------------------------------------------


def record_steps(conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append step-history rows (run_id, journey, version, person_id, node, outcome, reason, at)."""
    if conn.dialect.name == "postgresql":
        if rows:
            params = unnest_params(_STEPS, rows)
            params["a_reason"] = [str(r.get("reason") or "")[:1000] or None for r in rows]
            conn.execute(_STEPS_UNNEST, params)
        return
    for start in range(0, len(rows), _CHUNK):
        chunk = [dict(r, reason=(str(r.get("reason") or "")[:1000] or None)) for r in rows[start : start + _CHUNK]]
        if chunk:
            conn.execute(journey_steps.insert(), chunk)


def run_counts(conn: sa.Connection, journey: str | None = None) -> dict[str, int]:
    """Runs per status (of one journey when given)."""
    query = sa.select(journey_runs.c.status, sa.func.count()).group_by(journey_runs.c.status)
    if journey is not None:
        query = query.where(journey_runs.c.journey == journey)
    return {str(s): int(n) for s, n in conn.execute(query)}


def steps_of(conn: sa.Connection, *, run_id: str | None = None, person_id: str | None = None) -> list[dict[str, Any]]:
    """Step-history rows of a run or a person, in order."""
    query = sa.select(journey_steps).order_by(journey_steps.c.id)
    if run_id is not None:
        query = query.where(journey_steps.c.run_id == run_id)
    if person_id is not None:
        query = query.where(journey_steps.c.person_id == person_id)
    return list(_dicts(conn.execute(query)))
