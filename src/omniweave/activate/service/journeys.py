"""The journey engine on a Runtime: publish, enter, the trigger consumer, the stepper, the workers.

- `publish(runtime, journey, mapping=…)`: a new version unless the definition is unchanged (checksum);
  a run stays on its version; runs waiting at steps the new version removes are counted and moved
  only by an explicit mapping (old step -> new step).
- `JourneyEngine(runtime)`: one worker's engine.
  * `consume()` reads the inbox as consumer `journeys` (crash-safe like the loader: the range is
    marked pending, then committed; redoing it changes nothing because run ids are deterministic and
    wakes and goals are guarded): per event it (1) enters runs of journeys whose entry matches,
    (2) wakes the waits the event meets (same person, event and correlation value: push, not
    polling), (3) converts runs whose goal it meets;
  * `step()` claims due runs (a lease; `FOR UPDATE SKIP LOCKED` on PostgreSQL) and walks each through
    the machine; a send is ONE transaction: the policy check under the person's lock, the ledger row
    (key `j:<journey>:<step>:<run>`, pending) and the run's advance; the dispatcher sends it after
    the commit (outbox). Coupons are issued under the same key (one code however often retried),
    traits go in as `identify` events with a deterministic messageId, webhooks are ledger rows too;
  * `reconcile()` on start: ledger rows left `sending` by a dead worker longer than a lease get the
    provider's status where the adapter can look it up (`lookup(key)`), else `ambiguous` (counted,
    never resent on its own);
  * `date_entries()` enters the date journeys (birthday ± offset at local time) once per person per date.
- `run(runtime, workers=N)`: N worker processes (one on SQLite), each looping consume / step / dispatch.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from omniweave.activate.content.bound import BoundRenditions
from omniweave.activate.content.personal import skip_reason
from omniweave.activate.content.render import Namespace, person_variables, render, template_variables
from omniweave.activate.journeys import machine as M
from omniweave.activate.journeys import model
from omniweave.activate.journeys.definition import StepMapping
from omniweave.activate.journeys.model import CallWebhook, IssueCoupon, Journey, Send, UpdateTrait
from omniweave.activate.service import messages as msgs
from omniweave.activate.service.personal import best_sellers
from omniweave.channels.port import CHANNELS, Channel, Delivered, Message, Outcome, address_key
from omniweave.errors import InputError
from omniweave.events.normalize import deterministic_message_id
from omniweave.runtime import Runtime
from omniweave.storage.ops import journeys as Q
from omniweave.storage.ops.ledger import Ledger, insert_many_on, insert_on
from omniweave.storage.ops.tables import sends

log = logging.getLogger("omniweave.journeys")

CONSUMER = "journeys"
SOURCE = "omniweave-journeys"
ADVISORY_LOCK = 727275  # PostgreSQL: the one worker that holds the inbox consumer


# --- definitions as stored ------------------------------------------------------------------------


def _encode(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {"__t": type(value).__name__, **{f.name: _encode(getattr(value, f.name)) for f in fields(value)}}
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        kind = value.get("__t")
        if kind is not None:
            cls = getattr(model, str(kind))
            return cls(**{k: _decode(v) for k, v in value.items() if k != "__t"})
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    return value


def dump_journey(journey: Journey) -> bytes:
    """The definition as stored in `journey_versions` (JSON; the version number left out)."""
    data = _encode(journey)
    data["version"] = None
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def load_journey(raw: bytes, version: int) -> Journey:
    journey = _decode(orjson.loads(raw))
    assert isinstance(journey, Journey)
    return Journey(**{f.name: getattr(journey, f.name) for f in fields(Journey)} | {"version": version})


@dataclass(frozen=True)
class PublishResult:
    """What publishing did: the version, whether it is new, runs at removed steps, runs moved."""

    journey: str
    version: int
    created: bool
    removed_steps: dict[str, int] = field(default_factory=dict)
    moved: int = 0

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def publish(
    runtime: Runtime,
    journey: Journey,
    *,
    mapping: Mapping[str, str] | None = None,
    note: str | None = None,
    now: float | None = None,
) -> PublishResult:
    """Store `journey` as its next version (unchanged definition: the same version). Runs that have not
    ended stay on their version; those at steps the new version removes are reported, and moved to
    the new version only by `mapping` (old step -> step of the new version)."""
    now = time.time() if now is None else now
    raw = dump_journey(journey)
    checksum = hashlib.sha256(raw).hexdigest()
    mapping = dict(mapping or {})
    with runtime.store.engine.begin() as conn:
        previous = Q.latest_versions(conn).get(journey.name)
        version, created = Q.publish_version(conn, journey.name, raw, checksum, now, note)
        removed: dict[str, int] = {}
        moved = 0
        if created and previous is not None:  # runs of any older version at a step this one does not have
            waiting = Q.waiting_at(conn, journey.name, None)
            removed = {n: c for n, c in waiting.items() if n not in journey.steps}
            if mapping:  # checked by the definition's rules: every problem at once, nobody moved unless all hold
                old = load_journey(previous[1], previous[0])
                steps = {**{n: model.Step(n, model.Exit()) for n in waiting}, **old.steps}  # + older versions' steps
                StepMapping(mapping).check(replace(old, steps=steps), journey, waiting)
            moved = Q.move_runs(conn, journey.name, mapping, version, now)
    return PublishResult(journey.name, version, created, removed, moved)


# --- a durable sink: the fake provider of the crash tests and the benchmark ------------------------


class FileSink:
    """A channel that appends every message it takes to a file, fsynced before it answers (a provider that
    survives `kill -9`); `lookup(key)` is its status API, which `reconcile` asks."""

    def __init__(self, path: str | os.PathLike[str], name: str = "email", fsync: bool = True):
        self.path = Path(path)
        self.name = name
        self.fsync = fsync
        self._lock = threading.Lock()  # guards the counters; `_sync` makes one fsync cover a group
        self._sync = threading.Lock()
        self._written = 0
        self._synced = 0

    def send(self, message: Message, idempotency_key: str) -> Outcome:
        """Append, then return only once the line is on disk. Group commit: the dispatcher calls `send` from
        several threads, and one fsync covers every line written before it started (a thread whose line
        a fsync already covered does not fsync again) — durable before the outcome is recorded, with one
        fsync per group instead of one per message."""
        return self.send_many([(message, idempotency_key)])[0]

    def send_many(self, items: Sequence[tuple[Message, str]]) -> list[Outcome]:
        """`send` for a batch (the dispatcher's call for a step's rows): every line appended in one write, then
        one fsync (shared with concurrent callers: the group commit `send` describes) before any outcome is
        answered."""
        if not items:
            return []
        data = b"".join(
            orjson.dumps({"key": key, "channel": self.name, "to": message.to}) + b"\n" for message, key in items
        )
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            with self._lock:
                written = 0
                while written < len(data):  # a short write on a regular file is rare, but not an error
                    written += os.write(fd, data[written:])
                self._written += 1
                mine = self._written
            if self.fsync:
                with self._sync:
                    if self._synced < mine:
                        with self._lock:
                            upto = self._written
                        os.fsync(fd)
                        self._synced = upto
        finally:
            os.close(fd)
        return [Delivered(key) for _, key in items]

    def lookup(self, key: str) -> str | None:
        """'delivered' when the sink holds the message of `key`, else None."""
        return "delivered" if key in sink_keys(self.path) else None


def sink_keys(path: str | os.PathLike[str]) -> list[str]:
    """Every key a FileSink file holds (a torn last line is not a message)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for line in data.split(b"\n"):
        try:
            out.append(str(orjson.loads(line)["key"]))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
    return out


# --- the persons: who an event is, their profile --------------------------------------------------


class Directory:
    """Identities (user and anonymous ids -> person) and profiles, read from the warehouse and re-read
    every `ttl` seconds."""

    def __init__(self, runtime: Runtime, ttl: float = 30.0):
        self.runtime, self.ttl = runtime, ttl
        self.loaded = -1e18
        self.by_user: dict[str, str] = {}
        self.by_anon: dict[str, str] = {}
        self.profiles: Mapping[str, dict[str, Any]] = {}
        self.forced, self.forced_every = -1e18, 5.0
        self.signature: tuple[Any, ...] | None = None

    def _signature(self) -> tuple[Any, ...] | None:
        """The identities' and profiles' files with their sizes and modification times (None when the file
        system does not give a time: then every re-read reads)."""
        log_ = self.runtime.log
        out: list[Any] = []
        for dataset in ("identities", "profiles"):
            for path in log_.files(dataset):
                try:
                    info = log_.fs.info(path)
                except FileNotFoundError:  # replaced while we looked: read
                    return None
                mtime = info.get("mtime") or info.get("LastModified") or info.get("updated")
                if mtime is None:
                    return None
                out.append((path, info.get("size"), str(mtime), info.get("ino")))
        return tuple(out)

    def refresh(self, force: bool = False) -> None:
        """Re-read the identities and profiles when `ttl` has passed (or `force`) and their files changed."""
        if not force and time.monotonic() - self.loaded < self.ttl:
            return
        self.loaded = time.monotonic()
        signature = self._signature()
        if signature is not None and signature == self.signature:
            return  # nothing rewritten since the last read (100,000 profiles take seconds to read)
        self.signature = signature
        log_ = self.runtime.log
        if log_.has_data("identities"):
            ids = self.runtime.warehouse().table("identities")
            ids = ids.filter(ids.kind.isin(("user_id", "anonymous_id"))).select("kind", "value", "person_id")
            table = ids.to_pyarrow()
            by_user: dict[str, str] = {}
            by_anon: dict[str, str] = {}
            for kind, value, person in zip(
                *(table.column(c).to_pylist() for c in ("kind", "value", "person_id")), strict=True
            ):
                (by_user if kind == "user_id" else by_anon)[value] = person
            self.by_user, self.by_anon = by_user, by_anon
        if log_.has_data("profiles"):
            self.profiles = _Profiles(self.runtime.warehouse().table("profiles").to_pyarrow())

    def person_of(self, event: Mapping[str, Any]) -> str | None:
        props = event.get("properties") or {}
        if event.get("event") in ("Segment Entered", "Segment Exited") and props.get("person_id"):
            return str(props["person_id"])
        self.refresh()
        user, anon = event.get("userId"), event.get("anonymousId")
        found = (self.by_user.get(str(user)) if user else None) or (self.by_anon.get(str(anon)) if anon else None)
        if found is None and props.get("person_id") and str(props["person_id"]) in self.profiles:
            return str(props["person_id"])  # omniweave's own events about a send (Email Sent, …) name the person
        if found is None and (user or anon) and time.monotonic() - self.forced > self.forced_every:
            self.forced = time.monotonic()  # an id not seen yet: re-read, but not for every unknown id
            self.refresh(force=time.monotonic() - self.loaded > 1.0)
            found = (self.by_user.get(str(user)) if user else None) or (self.by_anon.get(str(anon)) if anon else None)
        return found

    def profile(self, person_id: str) -> dict[str, Any] | None:
        self.refresh()
        return self.profiles.get(person_id)

    def prefetch(self, person_ids: Sequence[str]) -> None:
        """Make the rows of these persons' profiles at once (a batch's: one `take`, not a slice per person)."""
        self.refresh()
        if isinstance(self.profiles, _Profiles):
            self.profiles.prefetch(person_ids)


class _Profiles(Mapping[str, dict[str, Any]]):
    """The profiles by person id, each row made into a dict when first asked for and kept: a worker that starts
    (or restarts after a kill) reads the table and indexes the ids, not 100,000 rows of 70 columns into
    Python objects first (~30 s on an idle machine, minutes under load: a worker killed every few seconds
    never got to work)."""

    def __init__(self, table: Any):
        self.table = table
        self.index = {str(p): i for i, p in enumerate(table.column("person_id").to_pylist())}
        self.rows: dict[str, dict[str, Any]] = {}

    def __getitem__(self, person_id: str) -> dict[str, Any]:
        row = self.rows.get(person_id)
        if row is None:
            row = self.rows[person_id] = self.table.slice(self.index[person_id], 1).to_pylist()[0]
        return row

    def __contains__(self, person_id: object) -> bool:
        return person_id in self.index

    def __iter__(self) -> Iterator[str]:
        return iter(self.index)

    def __len__(self) -> int:
        return len(self.index)

    def prefetch(self, person_ids: Sequence[str]) -> None:
        missing = sorted({p for p in person_ids if p in self.index and p not in self.rows})
        if missing:
            rows = self.table.take([self.index[p] for p in missing]).to_pylist()
            self.rows.update(zip(missing, rows, strict=True))


# --- the policy call ------------------------------------------------------------------------------


def _policy_check_many(
    conn: sa.Connection, runtime: Runtime, items: Sequence[tuple[Any, Mapping[str, Any], str]], now: float
) -> list[Any]:
    """The policy engine's verdicts for many sends (activate/service/policy.py `check_many`: the persons locked
    in ascending order, the facts read with one query per kind, the decisions recorded)."""
    if not items:
        return []
    from omniweave.activate.service.policy import check_many

    return check_many(conn, runtime, items, now=now)


def _intent(
    person_id: str,
    channel: str,
    message_class: str,
    key: str,
    journey: str,
    intended_at: float,
    free_form: bool = False,
) -> Any:
    from omniweave.activate.policy import SendIntent

    return SendIntent(
        person_id, channel, message_class, key, journey=journey, intended_at=intended_at, free_form=free_form
    )


# --- the engine -----------------------------------------------------------------------------------


@dataclass
class EngineStats:
    events: int = 0
    entered: int = 0
    woken: int = 0
    converted: int = 0
    stepped: int = 0
    transitions: int = 0
    sends: int = 0
    dispatched: int = 0
    reconciled: dict[str, int] = field(default_factory=dict)


def send_key(journey: str, node: str, run: str) -> str:
    return f"j:{journey}:{node}:{run}"


class JourneyEngine:
    """One worker's engine (see the module docstring)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        channels: Mapping[str, Channel] | None = None,
        fake: bool = False,
        sink: str | None = None,
        owner: str | None = None,
        lease: float = 30.0,
        clock: Callable[[], float] = time.time,
    ):
        self.runtime = runtime
        self.clock = clock
        self.owner = owner or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.lease = lease
        self.stats = EngineStats()
        self.directory = Directory(runtime)
        self._journeys: dict[tuple[str, int], Journey] = {}
        self._latest: dict[str, Journey] = {}
        self._latest_at = -1e18
        self._messages: dict[str, Any] | None = None
        self._brand: Any = None
        self._relevant: dict[str, frozenset[str]] = {}
        self._variables: dict[str, dict[str, Any]] = {}
        self._uses_segments: dict[tuple[str, int], bool] = {}
        self._members: dict[str, set[str]] | None = None
        self._batch_persons: set[str] = set()
        self._events: dict[str, list[M.EventFact]] | None = None  # the batch's persons' recent events, read once
        self._events_rules: tuple[frozenset[str], float] | None = None  # the names and window they were read for
        self._contacts: dict[int, dict[str, Any]] = {}  # consume's batch: inbox seq -> the trigger's contact
        self._waits: dict[tuple[str, str], list[dict[str, Any]]] | None = None
        self._unfinished: dict[str, list[dict[str, Any]]] | None = None
        self._renders: dict[tuple[str, str, bool, bytes], Any] = {}
        self._bound = BoundRenditions()  # e-mails and pushes made once per message and bound to each person
        self._withheld: dict[str, bool | None] = {}  # the round's sends without personalisation: key -> stated
        if sink is not None:
            channels = {name: FileSink(sink, name) for name in CHANNELS}
        self._channels = channels
        self._fake = fake
        self._dispatcher: Any = None
        self._sender: _Sender | None = None
        self._new_keys: list[str] = []
        self.max_transaction = 0.5  # seconds a batch may hold its transaction before the rest waits for the next
        self.send_threads = (
            1 if channels is None and not sink else (16 if sink else 4)
        )  # SMTP: one thread; the sink groups fsyncs

    # -- definitions --
    def latest(self) -> dict[str, Journey]:
        if time.monotonic() - self._latest_at > 2.0:
            with self.runtime.store.engine.connect() as conn:
                found = Q.latest_versions(conn)
            self._latest = {name: self.journey(name, v, raw) for name, (v, raw) in found.items()}
            self._latest_at = time.monotonic()
        return self._latest

    def journey(self, name: str, version: int, raw: bytes | None = None) -> Journey:
        key = (name, version)
        if key not in self._journeys:
            if raw is None:
                with self.runtime.store.engine.connect() as conn:
                    raw = Q.version_definition(conn, name, version)
                if raw is None:
                    raise InputError(f"journey {name!r} has no version {version}", field="version")
            self._journeys[key] = load_journey(raw, version)
        return self._journeys[key]

    # -- entering --
    def _start(
        self, conn: sa.Connection, j: Journey, person: str, entry_key: str, trigger: Mapping[str, Any], now: float
    ) -> bool:
        rid = M.run_id(j.name, person, entry_key)
        context = M.entry_context(j, person, trigger)
        run = {
            "id": rid,
            "journey": j.name,
            "version": j.version,
            "person_id": person,
            "entry_key": entry_key[:200],
            "node": j.start,
            "context": context,
            "entered_at": now,
        }
        started, why = Q.enter(
            conn, run, mode=j.re_entry.mode, cooldown=j.re_entry.cooldown, max_entries=j.re_entry.max_entries, now=now
        )
        if started:
            if self._unfinished is not None and j.goal is not None:  # a goal later in the same inbox batch
                self._unfinished.setdefault(person, []).append({**run, "variant": None})
            reason = f"key {entry_key}" + ("; in the holdout" if context.get("held_out") else "")
            Q.record_steps(conn, [self._row(j, rid, person, j.start, "entered", reason, now)])
            self.stats.entered += 1
        return started

    def _start_many(
        self,
        conn: sa.Connection,
        entries: Sequence[tuple[Journey, str, str, Mapping[str, Any], int]],
        now: float,
    ) -> int:
        """`_start` for many (journey, person, entry key, trigger, inbox seq) in a few statements; how many started."""
        runs: list[dict[str, Any]] = []
        for j, person, entry_key, trigger, seq in entries:
            context = M.entry_context(j, person, trigger)
            if seq in self._contacts:  # the address the trigger states (a sign-up's): newer than the profile's
                context["contact"] = self._contacts[seq]
            runs.append(
                {
                    "id": M.run_id(j.name, person, entry_key),
                    "journey": j.name,
                    "version": j.version,
                    "person_id": person,
                    "entry_key": entry_key[:200],
                    "node": j.start,
                    "context": context,
                    "entered_at": now,
                }
            )
        started = Q.enter_many(
            conn,
            [
                (r, e[0].re_entry.mode, e[0].re_entry.cooldown, e[0].re_entry.max_entries)
                for r, e in zip(runs, entries, strict=True)
            ],
            now,
        )
        rows = []
        for run, (j, person, entry_key, _, seq), ok in zip(runs, entries, started, strict=True):
            if not ok:
                continue
            if self._unfinished is not None and j.goal is not None:  # a goal later in the same inbox batch
                self._unfinished.setdefault(person, []).append({**run, "variant": None, "_seq": seq})
            held = "; in the holdout" if run["context"].get("held_out") else ""
            rows.append(self._row(j, str(run["id"]), person, j.start, "entered", f"key {entry_key}{held}", now))
        Q.record_steps(conn, rows)
        self.stats.entered += len(rows)
        return len(rows)

    def enter(self, journey: str, person_id: str, key: str, trigger: Mapping[str, Any] | None = None) -> bool:
        """Start a run of `journey` for `person_id` under the caller's `key` (the API entry)."""
        j = self.latest().get(journey)
        if j is None:
            raise InputError(f"no published journey {journey!r}", field="journey")
        with self.runtime.store.engine.begin() as conn:
            return self._start(conn, j, person_id, f"api:{key}", trigger or {}, self.clock())

    def enter_many(self, journey: str, person_ids: Sequence[str], key: str) -> int:
        """`enter` for many persons in one transaction per 1,000; how many started."""
        j = self.latest().get(journey)
        if j is None:
            raise InputError(f"no published journey {journey!r}", field="journey")
        started, analyze_at = 0, 5000
        for begin in range(0, len(person_ids), 1000):
            with self.runtime.store.engine.begin() as conn:
                batch: list[tuple[Journey, str, str, Mapping[str, Any], int]] = [
                    (j, person, f"api:{key}", {}, 0) for person in person_ids[begin : begin + 1000]
                ]
                started += self._start_many(conn, batch, self.clock())
                if begin + 1000 >= analyze_at:  # a bulk entry: the planner's statistics at 5k, 10k, 20k, … entered
                    Q.refresh_statistics(conn)
                    analyze_at *= 2
        return started

    def date_entries(self, now: float | None = None) -> int:
        """Enter date journeys for every profile whose date trait (± offset) is today at the journey's local
        time or earlier today; once per person per date (the entry key is `date:<yyyy-mm-dd>`)."""
        now = self.clock() if now is None else now
        self.directory.refresh()
        started = 0
        for j in self.latest().values():
            e = j.entry
            if e.kind != "date" or not e.trait:
                continue
            self.directory.prefetch(list(self.directory.profiles))  # every row: one `take`
            with self.runtime.store.engine.begin() as conn:
                for person, profile in self.directory.profiles.items():
                    due = _date_due(profile.get(e.trait), e, str(profile.get("timezone") or j.default_timezone), now)
                    if due is not None:
                        started += self._start(
                            conn, j, person, f"date:{due}", {e.trait: str(profile.get(e.trait))}, now
                        )
        return started

    # -- the trigger consumer --
    def consume(self, limit: int = 1000) -> int:
        """Read the inbox since the consumer's position; enter, wake and convert; returns events read."""
        store = self.runtime.store
        state = store.consumer(CONSUMER)
        if state.pending_end is None:
            rows = store.read(after=state.position, limit=limit)
            if not rows:
                return 0
            end = rows[-1].seq
            store.mark_pending(CONSUMER, end)
        else:
            end = state.pending_end
            rows = store.read(after=state.position, upto=end)
        journeys = self.latest()
        now = self.clock()
        events = []  # (seq, event, name, properties, person) of the batch's track events of known persons
        for row in rows:
            event = orjson.loads(row.payload)
            if not isinstance(event, dict) or event.get("type") != "track":
                continue
            props = event.get("properties") or {}
            if not isinstance(props, dict):
                continue
            person = self.directory.person_of(event)
            if person is not None:
                events.append((row.seq, event, str(event.get("event") or ""), props, person))
        goal_events = {j.goal.event for j in journeys.values() if j.goal is not None}
        with store.engine.begin() as conn:
            # the waits and the goals' runs of the whole batch: one query each, not one per event
            self._waits = Q.waits_among(conn, {(p, n) for _, _, n, _, p in events})
            self._unfinished = Q.unfinished_among(
                conn,
                {p for _, _, n, _, p in events if n in goal_events},
                [j.name for j in journeys.values() if j.goal is not None],
            )
            entries: list[tuple[Journey, str, str, Mapping[str, Any], int]] = []
            for seq, event, name, props, person in events:  # (1) the entries, matched in memory, entered at once
                for j in journeys.values():
                    if M.entry_matches(j, name, props):
                        key = str(event.get("messageId") or seq)
                        if j.entry.kind != "event":
                            key = f"segment:{j.entry.segment}:{seq}"
                        entries.append((j, person, key, props, seq))
                        contact = contact_of(event)
                        if contact:
                            self._contacts[seq] = contact
            if entries:
                self._start_many(conn, entries, now)
            self._contacts.clear()
            for seq, event, name, props, person in events:
                self._on_event(conn, journeys, seq, event, now, name=name, props=props, person=person)
            self._waits, self._unfinished = None, None
        store.commit_position(CONSUMER, end)
        self.stats.events += len(rows)
        return len(rows)

    def _on_event(
        self,
        conn: sa.Connection,
        journeys: Mapping[str, Journey],
        seq: int,
        event: Any,
        now: float,
        *,
        name: str,
        props: Mapping[str, Any],
        person: str,
    ) -> None:
        """One track event of a known person (its entries were made by `consume` for the whole batch): (2) the
        waits it meets, (3) the goals it meets; the waits and unfinished runs come from the batch's indexes."""
        waits = self._waits.get((person, name), []) if self._waits is not None else Q.waits_for(conn, person, name)
        for wait in waits:  # (2) waits
            if not M.wait_matches(wait["corr_property"], wait["corr_value"], props):
                continue
            j = self.journey(wait["journey"], wait["version"])
            step = j.steps.get(wait["node"])
            action = step.action if step else None
            if isinstance(action, model.WaitForEvent) and not M.filters_hold(action.where, props):
                continue
            ctx = M.woken_context(wait["context"], wait["node"], name, props)
            if Q.wake(conn, wait["run_id"], wait["node"], ctx, now):
                self.stats.woken += 1
        goals = [j.name for j in journeys.values() if j.goal is not None and j.goal.event == name]
        if not goals:
            return
        if self._unfinished is not None:
            # a run entered by this event or a later one of the batch is not converted by it: only events after
            # the trigger count
            runs = [r for r in self._unfinished.get(person, []) if r["journey"] in goals and r.get("_seq", -1) < seq]
        else:
            runs = Q.unfinished_of(conn, person, goals)
        trigger_key = str(event.get("messageId") or seq)
        for run in runs:  # (3) goals
            if run.get("entry_key") == trigger_key[:200]:  # the trigger again (another source, a replay)
                continue
            j = self.journey(run["journey"], run["version"])
            state = M.RunState(run["id"], person, run["node"], run["entered_at"], run["context"], run["variant"])
            if M.goal_met(j, j.goal, state, name, props, now) and Q.end_run(
                conn, run["id"], "converted", f"goal {name}", now
            ):
                Q.record_steps(conn, [self._row(j, run["id"], person, run["node"], "converted", f"goal {name}", now)])
                self.stats.converted += 1

    # -- the stepper --
    def _row(
        self, j: Journey, rid: str, person: str, node: str, outcome: str, reason: str, at: float
    ) -> dict[str, Any]:
        return {
            "run_id": rid,
            "journey": j.name,
            "version": j.version or 0,
            "person_id": person,
            "node": node,
            "outcome": outcome,
            "reason": reason,
            "at": at,
        }

    def step(self, limit: int = 500) -> int:
        """Claim due runs and walk each until it waits or ends; returns how many runs were claimed.

        The batch's sends, webhooks and state changes commit in one transaction (persons locked in
        ascending order, so two workers never deadlock); coupons and traits, which write through other
        connections, are done after it, one run at a time. A batch that fails is redone run by run."""
        now = self.clock()
        with self.runtime.store.engine.begin() as conn:
            claimed = Q.claim_due(conn, self.owner, now, self.lease, limit)
        if not claimed:
            return 0
        claimed.sort(key=lambda r: (str(r["person_id"]), str(r["id"])))
        self.directory.prefetch([str(r["person_id"]) for r in claimed])
        self._batch_persons, self._members = {str(r["person_id"]) for r in claimed}, None  # segments: per batch
        self._events = None  # events: per batch
        if any(self._branches_on_events(r) for r in claimed):
            # read before the batch's transaction and its time budget: read lazily inside it, a read longer than
            # `max_transaction` left one run walked per batch, so the log was read once per run
            self._recent_events(str(claimed[0]["person_id"]))
        keys_before = len(self._new_keys)
        deferred: list[tuple[dict[str, Any], M.RunState]] = []
        try:
            with self.runtime.store.engine.begin() as conn:
                batch = _Batch()
                began = time.monotonic()
                walked: list[str] = []
                pending: list[_PendingSend] = []
                for run in claimed:
                    if time.monotonic() - began > self.max_transaction:  # keep the write lock short (SQLite)
                        break
                    self._walk(conn, batch, run, self._state_of(run), now, deferred, io=False, sends=pending)
                    walked.append(str(run["id"]))
                for _ in range(100):  # the batch's sends: one policy check and one ledger insert per round
                    if not pending:
                        break
                    self._send_round(conn, pending, now)
                    after, pending = pending, []
                    for p in after:
                        nxt = self._finish_send(batch, p, now)
                        if nxt is not None:
                            self._walk(conn, batch, p.run, nxt, now, deferred, io=False, sends=pending)
                for p in pending:  # a send loop longer than 100 rounds: park the rest, due at once
                    batch.add(p.state.run_id, _open("active", now, now) | _base(p.adv), p.rows, None)
                if not batch.flush(conn, self.owner, walked):
                    raise _LeaseLost("a lease of the batch ran out")
                Q.release(conn, [str(r["id"]) for r in claimed[len(walked) :]], self.owner)
        except _LeaseLost:  # the batch outlasted its lease and another worker took runs over: theirs now
            log.warning("the leases of a batch of %d runs ran out; rolled back", len(claimed))
            del self._new_keys[keys_before:]
            deferred = []
        except Exception:  # noqa: BLE001 - redo the batch one run per transaction, so one bad run fails alone
            log.warning("journey batch of %d runs failed; redoing it run by run", len(claimed), exc_info=True)
            del self._new_keys[keys_before:]
            deferred = [(run, self._state_of(run)) for run in claimed]
        for run, state in deferred:
            self._one(run, state, now)
        self.stats.stepped += len(claimed)
        return len(claimed)

    def _state_of(self, run: Mapping[str, Any]) -> M.RunState:
        return M.RunState(
            str(run["id"]),
            str(run["person_id"]),
            str(run["node"]),
            float(run["entered_at"]),
            run["context"],
            run["variant"],
            run["status"] == "waiting",
        )

    def _one(self, run: dict[str, Any], state: M.RunState, now: float) -> None:
        """Walk one run in transactions of its own, doing coupons and traits as they come."""
        for _ in range(100):
            later: list[tuple[dict[str, Any], M.RunState]] = []
            try:
                with self.runtime.store.engine.begin() as conn:
                    batch = _Batch()
                    self._walk(conn, batch, run, state, now, later, io=True)
                    if not batch.flush(conn, self.owner, [str(run["id"])]):
                        raise _LeaseLost(str(run["id"]))
            except _LeaseLost:
                return
            except Exception as exc:  # noqa: BLE001 - one broken run must not stop the others: it fails, with why
                log.exception("journey run %s failed", run["id"])
                with self.runtime.store.engine.begin() as conn:
                    Q.save_run(conn, str(run["id"]), self.owner, _ended("failed", f"{type(exc).__name__}: {exc}", now))
                return
            if not later:
                return
            run, state = later[0]

    def _walk(
        self,
        conn: sa.Connection,
        batch: _Batch,
        run: dict[str, Any],
        state: M.RunState,
        now: float,
        deferred: list[tuple[dict[str, Any], M.RunState]],
        *,
        io: bool,
        sends: list[_PendingSend] | None = None,
    ) -> None:
        """Advance one run on `conn` until it waits, ends, or (without `io`) reaches a coupon or a trait; with
        `sends`, a send step is put there (the caller checks the policy and writes the ledger for all of
        them at once, then walks the run on)."""
        j = self.journey(run["journey"], run["version"])
        person = state.person_id
        profile = self.directory.profile(person) or {"person_id": person}
        segments = self._segments_of(person, j)
        facts = M.Facts(traits=profile, events=lambda: self._recent_events(person), segments=segments)
        for _ in range(100):
            adv = M.advance(j, state, facts, now)
            self.stats.transitions += len(adv.steps) or 1
            rows = [self._row(j, state.run_id, person, s.node, s.outcome, s.reason, now) for s in adv.steps]
            base = {"node": adv.node, "context": adv.context, "variant": adv.variant}
            if adv.effect is None:
                if adv.status in Q.ENDED:
                    values = _ended(adv.status, adv.end_reason or adv.status, now) | base
                else:
                    values = _open(adv.status, adv.wake_at, now) | base
                batch.add(state.run_id, values, rows, (person, adv.wait) if adv.wait else None)
                return
            action = adv.effect.action
            if isinstance(action, IssueCoupon | UpdateTrait) and not io:
                batch.steps.extend(rows)  # the steps up to here; the effect runs after the batch commits
                batch.add(state.run_id, _open("active", now, now) | base, [], None, keep_lease=True)
                deferred.append(
                    (run, replace(state, node=adv.node, context=adv.context, variant=adv.variant, timed_out=False))
                )
                return
            if isinstance(action, Send) and sends is not None:
                sends.append(self._prepare_send(run, j, state, profile, adv, action, rows, now))
                return
            nxt = self._effect(conn, batch, j, state, profile, adv, rows, now)
            if nxt is None:
                return
            state = nxt
            io = False  # one coupon or trait per transaction: the next one comes round again

    def _effect(
        self,
        conn: sa.Connection,
        batch: _Batch,
        j: Journey,
        state: M.RunState,
        profile: Mapping[str, Any],
        adv: M.Advance,
        rows: list[dict[str, Any]],
        now: float,
    ) -> M.RunState | None:
        """Perform the effect at `adv.node` on `conn` (the run's advance goes in the same transaction); the
        run's next state to keep walking, or None when it stops here (rescheduled or ended)."""
        assert adv.effect is not None
        node, action = adv.node, adv.effect.action
        rid, person = state.run_id, state.person_id
        key = send_key(j.name, node, rid)
        ctx = dict(adv.context)
        ok, outcome, reason = True, "", ""
        if isinstance(action, IssueCoupon):
            from omniweave.activate.service.coupons import issue

            try:
                code = issue(
                    self.runtime, action.pool, person_id=person, send_key=key, campaign=j.campaign or j.name, now=now
                )
                ctx.setdefault("coupons", {})[node] = code.code
                outcome, reason = "coupon", f"{action.pool}: {code.code}"
            except InputError as exc:
                ok, outcome, reason = False, "error", str(exc)
        elif isinstance(action, UpdateTrait):
            from omniweave.collect.emit import emit

            event = {
                "type": "identify",
                "messageId": deterministic_message_id(SOURCE, key),
                "userId": _user_of(profile, person),
                "traits": {action.trait: action.value},
                "timestamp": datetime.fromtimestamp(now, UTC).isoformat(),
                "context": {"library": {"name": SOURCE}, "journey": j.name},
            }
            try:
                emit(self.runtime.store, SOURCE, [event])
                outcome, reason = "trait", f"{action.trait} = {action.value!r}"
            except InputError as exc:
                ok, outcome, reason = False, "error", str(exc)
        elif isinstance(action, Send):
            pending = self._prepare_send({}, j, state, profile, adv, action, rows, now)
            self._send_round(conn, [pending], now)
            return self._finish_send(batch, pending, now)
        elif isinstance(action, CallWebhook):
            payload = {"journey": j.name, "step": node, "run": rid, "person_id": person, "trigger": ctx.get("trigger")}
            row: dict[str, object] = {
                "key": key,
                "channel": "webhook",
                "to_address": action.url,
                "person_id": person,
                "campaign": j.campaign or j.name,
                "message_name": node,
                "message_class": "transactional",
                "content": orjson.dumps({"payload": payload}),
            }
            if insert_on(conn, row, now):
                self._new_keys.append(key)
            outcome, reason = "webhook", action.url
        if outcome:
            rows.append(self._row(j, rid, person, node, outcome, reason, now))
        target = M.after_effect(j, node, ok)
        if target is None:
            batch.add(
                rid, _ended("failed", reason or "an effect failed", now) | {"node": node, "context": ctx}, rows, None
            )
            return None
        ctx.pop("retry_at", None)
        ctx.pop("intended_at", None)
        batch.steps.extend(rows)
        return M.RunState(rid, person, target, state.entered_at, ctx, adv.variant)

    def _prepare_send(
        self,
        run: dict[str, Any],
        j: Journey,
        state: M.RunState,
        profile: Mapping[str, Any],
        adv: M.Advance,
        action: Send,
        rows: list[dict[str, Any]],
        now: float,
    ) -> _PendingSend:
        """A send step about to be asked of the policy: its message, class and candidate channels."""
        ctx = dict(adv.context)
        profile = with_contact(profile, ctx.get("contact"))
        message = self._load_messages().get(action.message)
        first = action.channel if action.channel != "preferred" else str(profile.get("preferred_channel") or "email")
        klass = action.message_class or j.message_class or (message.message_class if message else "promotional")
        intended = float(ctx.setdefault("intended_at", now))
        return _PendingSend(
            run,
            j,
            state,
            adv,
            action,
            send_key(j.name, adv.node, state.run_id),
            ctx,
            profile,
            message,
            klass,
            intended,
            list(dict.fromkeys([first, *action.fallback])),
            rows,
        )

    def _send_round(self, conn: sa.Connection, items: Sequence[_PendingSend], now: float) -> None:
        """Policy and ledger for many send steps: every step's next candidate channel is asked of the policy in
        one `check_many`, the `send`s written to the ledger in one statement; a dropped channel moves the step
        on to its fallback in the next round. Each item ends with `result` sent, skipped or reschedule."""
        open_ = list(items)
        while open_:
            asks: list[tuple[_PendingSend, str, str, Any, Mapping[str, Any], str | tuple[str, ...]]] = []
            for p in open_:
                j, person, node = p.journey, p.state.person_id, p.adv.node
                if p.message is None:
                    p.history.append(
                        self._row(j, p.state.run_id, person, node, "skipped", f"no message {p.action.message!r}", now)
                    )
                    p.result = "skipped"
                    continue
                while p.channels:
                    channel = p.channels.pop(0)
                    if channel not in p.message.channels:
                        p.history.append(
                            self._row(
                                j,
                                p.state.run_id,
                                person,
                                node,
                                "skipped",
                                f"{p.message.name} has no {channel} rendition",
                                now,
                            )
                        )
                        continue
                    address = msgs.address_of(self.runtime, channel, p.profile)
                    if address is None:
                        p.history.append(
                            self._row(j, p.state.run_id, person, node, "skipped", f"no {channel} address", now)
                        )
                        continue
                    to = ", ".join(address) if isinstance(address, tuple) else address
                    free_form = channel == "whatsapp" and not p.message.override("whatsapp", "template")
                    intent = _intent(person, channel, p.klass, p.key, j.name, p.intended, free_form=free_form)
                    zoned = p.profile if p.profile.get("timezone") else {**p.profile, "timezone": j.default_timezone}
                    asks.append((p, channel, address_key(channel, to), intent, zoned, address))
                    break
                else:
                    p.result = "skipped"
            self._personalisation(conn, [ask[0] for ask in asks])
            # rendered before the policy takes the persons' locks (on SQLite: the database's write lock), so the
            # lock is held for the queries and the inserts only; a letter's QR link is made only for a send
            ready = {
                id(p): self._render(p.message, channel, p.profile, address, p.key)
                for p, channel, _, _, _, address in asks
                if channel != "print" and not _pool_of(p.message)  # a coupon's code: rendered once it is issued
            }
            asks, unsent = self._without_personal_data(asks, ready, now)
            verdicts = _policy_check_many(conn, self.runtime, [(i, z, a) for _, _, a, i, z, _ in asks], now)
            fresh: list[dict[str, Any]] = []
            open_ = unsent  # skipped for want of personal data
            for (p, channel, to_key, _, _, address), verdict in zip(asks, verdicts, strict=True):
                j, rid, person, node = p.journey, p.state.run_id, p.state.person_id, p.adv.node
                if verdict.outcome == "reschedule" and verdict.retry_at is not None:
                    p.ctx["retry_at"] = verdict.retry_at
                    if "quiet hours" in verdict.reason:  # a deliberate deferral: the TTL counts from the window
                        p.ctx["intended_at"] = verdict.retry_at
                    p.history.append(self._row(j, rid, person, node, "rescheduled", verdict.reason, now))
                    p.result = "reschedule"
                    continue
                if verdict.outcome != "send":
                    p.history.append(self._row(j, rid, person, node, "skipped", f"{channel}: {verdict.reason}", now))
                    open_.append(p)  # the next fallback channel, if any, in the next round
                    continue
                code = None
                pool = _pool_of(p.message)
                if pool:  # the offer's coupon, issued for this send in this transaction (retried: the same code)
                    from omniweave.activate.service.coupons import issue_on

                    try:
                        coupon = issue_on(
                            conn,
                            pool,
                            person_id=person,
                            send_key=p.key,
                            channel=channel,
                            campaign=j.campaign or j.name,
                            message_name=p.message.name,
                            now=now,
                        )
                    except InputError as exc:
                        why = f"{p.message.name} on {channel}: the offer's coupon: {exc}"
                        p.history.append(self._row(j, rid, person, node, "error", why, now))
                        p.result, p.error = "error", why
                        continue
                    code = coupon.display
                rendition = ready.get(id(p)) or self._render(p.message, channel, p.profile, address, p.key, code=code)
                fresh.append(
                    {
                        "key": p.key,
                        "channel": channel,
                        "to_address": to_key,
                        "person_id": person,
                        "campaign": j.campaign or j.name,
                        "message_name": p.message.name,
                        "message_class": p.klass,
                        "content": orjson.dumps(rendition.content),
                    }
                )
                p.history.append(
                    self._row(
                        j, rid, person, node, "sent", f"{p.message.name} on {channel}{self._not_personal(p.key)}", now
                    )
                )
                p.result = "sent"
            if fresh:
                new = insert_many_on(conn, fresh, now)
                for r in fresh:
                    if r["key"] in new:
                        self._new_keys.append(str(r["key"]))
                        self.stats.sends += 1

    def _finish_send(self, batch: _Batch, p: _PendingSend, now: float) -> M.RunState | None:
        """After the policy and the ledger: the run's next state to walk on, or None when it stops here
        (rescheduled: it waits until `retry_at` and asks again; or ended)."""
        rows = p.rows + p.history
        rid, person, node = p.state.run_id, p.state.person_id, p.adv.node
        if p.result == "error":  # the send could not be made (its coupon pool is exhausted): the on-error edge
            target = M.after_effect(p.journey, node, False)
            if target is None:
                values = _ended("failed", p.error, now) | {"node": node, "context": p.ctx, "variant": p.adv.variant}
                batch.add(rid, values, rows, None)
                return None
            p.ctx.pop("retry_at", None)
            p.ctx.pop("intended_at", None)
            batch.steps.extend(rows)
            return M.RunState(rid, person, target, p.state.entered_at, p.ctx, p.adv.variant)
        if p.result == "reschedule":
            values = _open("active", float(p.ctx["retry_at"]), now) | {
                "node": node,
                "context": p.ctx,
                "variant": p.adv.variant,
            }
            batch.add(rid, values, rows, None)
            return None
        target = M.after_effect(p.journey, node, True)
        if target is None:
            batch.add(rid, _ended("failed", "an effect failed", now) | {"node": node, "context": p.ctx}, rows, None)
            return None
        p.ctx.pop("retry_at", None)
        p.ctx.pop("intended_at", None)
        batch.steps.extend(rows)
        return M.RunState(rid, person, target, p.state.entered_at, p.ctx, p.adv.variant)

    def _render(
        self,
        message: Any,
        channel: str,
        profile: Mapping[str, Any],
        address: str | tuple[str, ...],
        key: str,
        code: str | None = None,
    ) -> Any:
        """The rendition, made once per (message, channel, the profile values its templates can read): the
        templates see only the profile columns they name (a template reading `person` as a whole sees all).
        With the person's coupon `code` (`{{ offer.code }}`) it is made for this send alone."""
        relevant = self._relevant.get(message.name)
        if relevant is None:  # the templates' words (not the prose: a description's "person's" read as `person`)
            text = repr(replace(message, description="", source=""))
            if re.search(r"\bperson\b(?!\.[A-Za-z_])", text):
                relevant = _ALL
            else:
                words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
                relevant = frozenset(words | {"person_id", "recommended_products"})
            self._relevant[message.name] = relevant
        seen = profile if relevant is _ALL else {k: v for k, v in profile.items() if k in relevant}
        personal = key not in self._withheld  # else its personal values are withheld (content/personal.py)
        if personal and code is None and channel != "print":  # made once per message, the person's values bound
            bound = self._bound.get(
                message, channel, seen, lambda values: self._render_in_full(message, channel, values)
            )
            if bound is not None:
                return bound
        best = () if personal else best_sellers(self.runtime)
        cacheable = channel != "print" and code is None
        ck = (
            (message.name, channel, personal, orjson.dumps(seen, default=str, option=orjson.OPT_SORT_KEYS))
            if cacheable
            else None
        )
        if ck is not None and ck in self._renders:
            return self._renders[ck]
        if channel == "print":  # a letter: its QR link is made per send
            rendition = msgs._render_for(
                self.runtime,
                message,
                self._load_brand(),
                channel,
                seen,
                address,
                code=code,
                key=key,
                personalised=personal,
                best_sellers=best,
            )
        else:  # the brand's and the message's variables built once per message; the person's per send
            static = self._variables.get(message.name)
            if static is None:
                static = self._variables[message.name] = template_variables({}, self._load_brand(), message)
            variables = {
                **static,
                **person_variables(seen, message, personalised=personal, best_sellers=best),
            }
            if code is not None:
                variables["offer"] = Namespace("offer", {**variables["offer"], "code": code})
            rendition = render(message, self._load_brand(), channel, variables)
        if ck is not None:
            if len(self._renders) > 10_000:
                self._renders.clear()
            self._renders[ck] = rendition
        return rendition

    def _render_in_full(self, message: Any, channel: str, seen: Mapping[str, Any]) -> Any:
        """The rendition of a personalised e-mail or push for the profile values `seen`, every template rendered."""
        static = self._variables.get(message.name)
        if static is None:
            static = self._variables[message.name] = template_variables({}, self._load_brand(), message)
        variables = {**static, **person_variables(seen, message, personalised=True, best_sellers=())}
        return render(message, self._load_brand(), channel, variables)

    def _personalisation(self, conn: sa.Connection, sends: Sequence[_PendingSend]) -> None:
        """Which of the round's sends go to a person who may not get personal content (`_render` withholds
        their personal values): the profiles' consent with the history's statements over it, one query."""
        from omniweave.activate.service.personal import personalisation_flags

        flags = personalisation_flags(conn, self.runtime.settings, [p.profile for p in sends]) if sends else []
        self._withheld = {p.key: stated for p, (ok, stated) in zip(sends, flags, strict=True) if not ok}

    def _without_personal_data(
        self, asks: list[Any], ready: Mapping[int, Any], now: float
    ) -> tuple[list[Any], list[_PendingSend]]:
        """The round's asks whose message may go without personal content, and the sends skipped because it
        cannot (a personal value with no fallback, or `without_personalisation: skip`): a step row with the
        reason each; they move on to their next fallback channel, as after a policy drop."""
        if not self._withheld:
            return asks, []
        from omniweave.activate.service.personal import without_personalisation

        kept, unsent = [], []
        for ask in asks:
            p, channel, address = ask[0], ask[1], ask[5]
            why = None
            if p.key in self._withheld:
                rendition = ready.get(id(p)) or self._render(p.message, channel, p.profile, address, p.key)
                without = without_personalisation(self.runtime.settings, p.message)
                why = skip_reason(p.message.name, without, False, rendition.problems, self._withheld[p.key])
            if why is None:
                kept.append(ask)
                continue
            row = self._row(
                p.journey, p.state.run_id, p.state.person_id, p.adv.node, "skipped", f"{channel}: {why}", now
            )
            p.history.append(row)
            unsent.append(p)
        return kept, unsent

    def _not_personal(self, key: str) -> str:
        """What a `sent` step row adds when the send went without personal content."""
        return " (not personalised: no personalisation consent)" if key in self._withheld else ""

    def _segments_of(self, person: str, j: Journey) -> frozenset[str]:
        """The ids of the segments `person` is in (the warehouse's `segment_members`), read once per batch for
        all of the batch's persons, and only when the run's journey has a condition on segments."""
        uses = self._uses_segments.get((j.name, j.version or 0))
        if uses is None:
            uses = any(
                arm.condition.in_segments or arm.condition.not_in_segments
                for step in j.steps.values()
                if isinstance(step.action, model.Branch)
                for arm in step.action.arms
            )
            self._uses_segments[(j.name, j.version or 0)] = uses
        if not uses:
            return frozenset()
        if self._members is None:
            self._members = {}
            if self.runtime.log.has_data("segment_members"):
                table = self.runtime.warehouse().table("segment_members")
                persons = sorted(self._batch_persons | {person})
                rows = table.filter(table.person_id.isin(persons)).select("segment_id", "person_id").to_pyarrow()
                for sid, pid in zip(*(rows.column(c).to_pylist() for c in ("segment_id", "person_id")), strict=True):
                    self._members.setdefault(str(pid), set()).add(str(sid))
        if person not in self._members and person not in self._batch_persons:  # a person outside the batch
            self._batch_persons = {person}
            self._members = None
            return self._segments_of(person, j)
        return frozenset(self._members.get(person, ()))

    def _load_messages(self) -> dict[str, Any]:
        if self._messages is None:
            self._messages = msgs.load_messages(self.runtime.settings)
        return self._messages

    def _load_brand(self) -> Any:
        if self._brand is None:
            self._brand = msgs.load_brand(self.runtime.settings)
        return self._brand

    def _branches_on_events(self, run: Mapping[str, Any]) -> bool:
        """Whether a claimed run stands at a branch with a condition on events."""
        step = self.journey(str(run["journey"]), int(run["version"])).steps.get(str(run["node"]))
        return (
            step is not None
            and isinstance(step.action, model.Branch)
            and any(arm.condition.events for arm in step.action.arms)
        )

    def _recent_events(self, person: str) -> list[M.EventFact]:
        """The person's events that the journeys' conditions look at (`_event_rules`: their names, within the
        longest window, at most 365 days) from the event log (read only for a condition on events), read once per
        batch for all of the batch's persons: one scan of the log, not one per run (each scan costs seconds on a
        log of a few hundred thousand events; the demo's win-back branches on every run)."""
        rules = _event_rules(self._journeys.values())  # every version loaded, the walked run's too
        if (
            self._events is None
            or rules != self._events_rules
            or (person not in self._events and person not in self._batch_persons)
        ):
            if person not in self._batch_persons:  # a person outside the batch
                self._batch_persons, self._members = {person}, None
            self._events = self._read_events(self._batch_persons | {person}, *rules)
            self._events_rules = rules
        return self._events.get(person, [])

    def _read_events(self, persons: set[str], names: frozenset[str], window: float) -> dict[str, list[M.EventFact]]:
        """The persons' events named `names` of the last `window` seconds, from the day partitions of that window
        only: a condition counts no other (a scan of every file of the log took seconds per batch, the default
        demo's win-back one a day: minutes in all)."""
        owners = {u: p for u, p in self.directory.by_user.items() if p in persons}
        out: dict[str, list[M.EventFact]] = {p: [] for p in persons}
        if not owners or not names:
            return out
        since = datetime.fromtimestamp(self.clock() - window, UTC)
        ev = self.runtime.warehouse().files_table("events", self.runtime.log.files_since("events", since))
        rows = ev.filter(
            ev.user_id.isin(sorted(owners)) & ev.event.isin(sorted(names)) & (ev.timestamp >= since)
        ).select("user_id", "event", "timestamp", "properties")
        for r in rows.to_pyarrow().to_pylist():
            props = orjson.loads(r["properties"] or "{}")
            out[owners[str(r["user_id"])]].append(M.EventFact(str(r["event"]), r["timestamp"].timestamp(), props))
        return out

    # -- sending and reconciling --
    def dispatcher(self) -> Any:
        if self._dispatcher is None:
            from omniweave.channels.service import dispatcher_for, open_channels

            channels = self._channels if self._channels is not None else open_channels(self.runtime, fake=self._fake)
            # on the engine's clock: the ledger's times and the feedback events (`Email Delivered`, `SMS Sent`, …)
            # of a simulated or replayed run (the demo's world time) are stamped when the engine is, not now
            self._dispatcher = dispatcher_for(self.runtime, channels, clock=self.clock)
        return self._dispatcher

    def dispatch(self) -> int:
        """Send the ledger rows this worker wrote, then whatever else is due (rows a dead worker left). With a
        sender thread running (`start_sending`), the new rows are handed to it and their number returned."""
        keys, self._new_keys = self._new_keys, []
        if self._sender is not None:
            self._sender.hand(keys)
            return len(keys)
        return self._send_now(keys)

    def _send_now(self, keys: Sequence[str], due: bool = True) -> int:
        done = 0
        d = self.dispatcher()
        # counted when this call claimed the row: a handed row the sender's sweep of due rows sent first
        # (committed, not yet handed) is reported again by the handed attempt, and is not a second send
        for start in range(0, len(keys), 500):
            results = d.attempt_many(keys[start : start + 500], workers=self.send_threads, written=True)
            done += sum(r.attempted for r in results)
        if due:
            done += sum(r.attempted for r in d.run_due(limit=500, workers=self.send_threads))
        self.stats.dispatched += done
        return done

    def start_sending(self) -> None:
        """From now on send in a thread of this process: `dispatch` hands the rows a batch committed to it and
        returns, so the next batch is stepped while this one's channel calls and ledger writes are under
        way. The order per row is unchanged (committed pending row, claim, call, outcome), so a `kill -9`
        leaves the same states as before. `stop_sending` waits for what was handed over."""
        if self._sender is None:
            self.dispatcher()
            self._sender = _Sender(self)
            self._sender.start()

    def reconcile_soon(self) -> None:
        """`reconcile`, in the sender thread between two of its batches when there is one (so a row it has
        claimed and is sending is never taken for a dead worker's), else now."""
        if self._sender is not None:
            self._sender.reconcile = True
        else:
            self.reconcile()

    def stop_sending(self) -> None:
        """Send what was handed over, then stop the sender thread (its error, if it had one, is raised)."""
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.stop()

    def reconcile(self, older_than: float | None = None) -> dict[str, int]:
        """Ledger rows left `sending` longer than a lease: the provider's status where the adapter can look it
        up, else `ambiguous` (counted, never resent on its own)."""
        now = self.clock()
        cutoff = now - self.lease if older_than is None else older_than
        with self.runtime.store.engine.connect() as conn:
            stuck = conn.execute(
                sa.select(sends.c.key, sends.c.channel).where(sends.c.status == "sending", sends.c.updated_at < cutoff)
            ).all()
        channels = self.dispatcher().channels
        ledger = Ledger(self.runtime.store.engine)
        counts: dict[str, int] = {}
        for key, channel in stuck:
            lookup = getattr(channels.get(channel), "lookup", None)
            status = lookup(key) if lookup is not None else None
            if status == "delivered":
                ledger.finish(key, "delivered", now=now, reason="reconciled: the provider has it", provider_id=key)
            else:
                ledger.finish(key, "ambiguous", now=now, reason="the worker stopped while sending: outcome unknown")
                status = "ambiguous"
            counts[status] = counts.get(status, 0) + 1
        for k, v in counts.items():
            self.stats.reconciled[k] = self.stats.reconciled.get(k, 0) + v
        return counts


class _Sender(threading.Thread):
    """The sender thread of `JourneyEngine.start_sending`: sends the keys handed to it, and every half second
    (and when it stops) whatever else is due."""

    def __init__(self, engine: JourneyEngine):
        super().__init__(name="omniweave-journeys-sender", daemon=True)
        self.engine = engine
        self.ready = threading.Condition()
        self.keys: list[str] = []
        self.stopping = False
        self.reconcile = False
        self.error: BaseException | None = None

    def hand(self, keys: Sequence[str]) -> None:
        if self.error is not None:
            raise RuntimeError(f"the journeys sender thread failed: {self.error}") from self.error
        if keys:
            with self.ready:
                self.keys.extend(keys)
                self.ready.notify()

    def stop(self) -> None:
        with self.ready:
            self.stopping = True
            self.ready.notify()
        self.join()
        if self.error is not None:
            raise RuntimeError(f"the journeys sender thread failed: {self.error}") from self.error

    def run(self) -> None:
        due_at = 0.0
        while True:
            with self.ready:
                if not self.keys and not self.stopping:
                    self.ready.wait(timeout=0.05)
                keys, self.keys = self.keys, []
                stopping = self.stopping
            try:
                if self.reconcile:
                    self.reconcile = False
                    self.engine.reconcile()
                # the sweep of due rows (a dead worker's, retries) at most every half second, and once at the end:
                # a sweep after every idle 50 ms read and sorted the whole backlog of pending rows of a drain over
                # and over, and claimed rows the stepper had committed and was about to hand over
                due = stopping or time.monotonic() >= due_at
                self.engine._send_now(keys, due=due)
                if due:
                    due_at = time.monotonic() + 0.5
            except BaseException as exc:  # noqa: BLE001 - kept, and raised in the engine's thread by `hand`/`stop`
                log.exception("the journeys sender thread failed")
                self.error = exc
                return
            if stopping and not keys:
                return


def _open(status: str, wake_at: float | None, now: float) -> dict[str, Any]:
    return {
        "status": status,
        "wake_at": wake_at,
        "end_reason": None,
        "ended_at": None,
        "lease_owner": None,
        "lease_until": None,
        "updated_at": now,
    }


_ALL: frozenset[str] = frozenset({"*"})


def _pool_of(message: Any) -> str | None:
    """The coupon pool of a message's offer (its `{{ offer.code }}` is issued per send), if it names one."""
    offer = getattr(message, "offer", None)
    return offer.pool if offer is not None and offer.pool else None


def _base(adv: M.Advance) -> dict[str, Any]:
    return {"node": adv.node, "context": adv.context, "variant": adv.variant}


@dataclass
class _PendingSend:
    """A send step between the walk and the policy: what `_send_round` needs and what it found."""

    run: dict[str, Any]
    journey: Journey
    state: M.RunState
    adv: M.Advance
    action: Send
    key: str
    ctx: dict[str, Any]
    profile: Mapping[str, Any]
    message: Any
    klass: str
    intended: float
    channels: list[str]
    rows: list[dict[str, Any]]
    history: list[dict[str, Any]] = field(default_factory=list)
    result: str = ""
    error: str = ""


class _Batch:
    """What a batch of runs writes: each run's new state, its steps, its waits — flushed in a few statements."""

    def __init__(self) -> None:
        self.saves: dict[str, dict[str, Any]] = {}
        self.keep: set[str] = set()
        self.steps: list[dict[str, Any]] = []
        self.waits: list[tuple[str, str, M.WaitSpec]] = []

    def add(
        self,
        run_id: str,
        values: dict[str, Any],
        rows: list[dict[str, Any]],
        wait: tuple[str, M.WaitSpec] | None,
        keep_lease: bool = False,
    ) -> None:
        self.saves[run_id] = values
        self.steps.extend(rows)
        if keep_lease:
            self.keep.add(run_id)
        if wait:
            self.waits.append((run_id, wait[0], wait[1]))

    def flush(self, conn: sa.Connection, owner: str, claimed: Sequence[str]) -> bool:
        """Write it all if `owner` still holds every lease of `claimed`; False (nothing written) if not."""
        if not Q.holds_leases(conn, owner, claimed):
            return False
        Q.save_runs(conn, owner, [{**v, "id": rid} for rid, v in self.saves.items() if rid not in self.keep])
        Q.save_runs(
            conn, owner, [{**v, "id": rid} for rid, v in self.saves.items() if rid in self.keep], keep_lease=True
        )
        Q.park_waits(
            conn, [(rid, person, w.event, w.corr_property, w.corr_value, w.until) for rid, person, w in self.waits]
        )
        Q.record_steps(conn, self.steps)
        return True


class _LeaseLost(Exception):
    """The worker's lease on a run ran out and another worker holds it now."""


def _ended(status: str, reason: str, now: float) -> dict[str, Any]:
    return {
        "status": status,
        "end_reason": reason[:1000],
        "ended_at": now,
        "wake_at": None,
        "lease_owner": None,
        "lease_until": None,
        "updated_at": now,
    }


_STATED_CONSENT = {f"{c}_opt_in": f"consent_{c}" for c in ("email", "sms", "whatsapp", "push")}


def contact_of(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The e-mail address and phone an event states for its person (a sign-up's or a till capture's traits, top-level
    or in `context.traits`), the opt-ins it states (`email_opt_in` -> `consent_email`, …) and the event's time;
    None when it states no address."""
    found: dict[str, Any] = {}
    consent: dict[str, bool] = {}
    context = event.get("context")
    for traits in (event.get("traits"), context.get("traits") if isinstance(context, Mapping) else None):
        if not isinstance(traits, Mapping):
            continue
        for name in ("email", "phone"):
            value = traits.get(name)
            if name not in found and isinstance(value, str) and value.strip():
                found[name] = value.strip().lower() if name == "email" else value.strip()
        for trait, column in _STATED_CONSENT.items():
            if column not in consent and isinstance(traits.get(trait), bool):
                consent[column] = bool(traits[trait])
    if not found:
        return None
    if consent:
        found["consent"] = consent
    found["at"] = _epoch_of(event.get("timestamp"))
    return found


def with_contact(profile: Mapping[str, Any], contact: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """`profile` as the run's trigger (`contact_of`) left it, when the profile is older than that event (its
    `last_seen` before the trigger: built before the person signed up or gave an address at the till, it lacks the
    address or has an older one, and the consent stated with it): the stated address and opt-ins over the profile's.
    The policy still reads the consent history over these, so a withdrawal recorded since wins."""
    if not contact:
        return profile
    seen = _epoch_of(profile.get("last_seen"))
    if seen is not None and contact.get("at") is not None and seen >= float(contact["at"]):
        return profile
    stated: dict[str, Any] = {f"primary_{n}": contact[n] for n in ("email", "phone") if contact.get(n)}
    stated.update(contact.get("consent") or {})
    return {**profile, **stated}


def _epoch_of(value: Any) -> float | None:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        try:
            at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
    return None


RECENT_EVENTS_DAYS = 365
"""How far back a condition on events looks at most (a rule without `within`: this far)."""


def _event_rules(journeys: Iterable[Journey]) -> tuple[frozenset[str], float]:
    """The event names the branch conditions of `journeys` count, and the longest window they look back (seconds;
    a rule without `within` looks back `RECENT_EVENTS_DAYS`): what `_recent_events` reads of the log."""
    longest = RECENT_EVENTS_DAYS * 86400.0
    names: set[str] = set()
    window = 0.0
    for j in journeys:
        for step in j.steps.values():
            if isinstance(step.action, model.Branch):
                for arm in step.action.arms:
                    for rule in arm.condition.events:
                        names.add(rule.event)
                        window = max(window, longest if rule.within is None else min(rule.within, longest))
    return frozenset(names), window


def _user_of(profile: Mapping[str, Any], person: str) -> str:
    users = profile.get("user_ids") or []
    return str(users[0]) if users else person


def _date_due(value: Any, entry: model.Entry, tz: str, now: float) -> str | None:
    """The date (yyyy-mm-dd) a date entry is due for a trait value, when that is today (local) and its time passed."""
    if value is None:
        return None
    try:
        day = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
    except ValueError:
        return None
    z = M.zone(tz)
    local = datetime.fromtimestamp(now, z)
    if entry.yearly:
        try:
            day = day.replace(year=local.year)
        except ValueError:  # 29 February in a common year: the 28th
            day = day.replace(year=local.year, day=28)
    due = day + timedelta(seconds=entry.offset)
    hours, _, minutes = entry.at.partition(":")
    when = datetime(due.year, due.month, due.day, int(hours), int(minutes or 0), tzinfo=z)
    if when.date() == local.date() and when <= local:
        return due.isoformat()
    return None


# --- workers --------------------------------------------------------------------------------------


class _Changes:
    """Waits for a commit to a SQLite database by any other connection (`PRAGMA data_version` changes)."""

    TICK = 0.005

    def __init__(self, engine: sa.Engine, idle_sleep: float):
        self.conn = engine.connect()
        self.longest = max(0.25, idle_sleep)
        self.seen = self._version()

    def _version(self) -> int:
        value = int(self.conn.exec_driver_sql("PRAGMA data_version").scalar_one())
        self.conn.rollback()
        return value

    def wait(self) -> None:
        """Until something was committed since the last call, or `longest` seconds (timers come due meanwhile)."""
        deadline = time.monotonic() + self.longest
        while time.monotonic() < deadline:
            version = self._version()
            if version != self.seen:
                self.seen = version
                return
            time.sleep(self.TICK)

    def close(self) -> None:
        self.conn.close()


@dataclass(frozen=True)
class RunReport:
    """What `run` did."""

    workers: int
    note: str
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def work(
    runtime: Runtime,
    *,
    stop: Callable[[], bool] | None = None,
    until_idle: bool = False,
    sink: str | None = None,
    fake: bool = False,
    idle_sleep: float = 0.05,
    batch: int = 500,
    lease: float = 30.0,
    background_sends: bool = True,
) -> EngineStats:
    """One worker's loop: reconcile, then consume triggers (when this worker holds the consumer), step due
    runs and dispatch sends; until `stop()` or, with `until_idle`, nothing is left. With `background_sends` the
    channel calls run in a sender thread while the next batch is stepped.

    When idle: on SQLite the loop waits for any commit to the database (an event in the inbox, a run woken)
    and goes round within a few milliseconds of it — `PRAGMA data_version` read every 5 ms, a cheap read of
    one counter — and at least every 0.25 s for the timers (`idle_sleep` at the most when that is longer);
    elsewhere it sleeps `idle_sleep`."""
    engine = JourneyEngine(runtime, sink=sink, fake=fake, lease=lease)
    engine.reconcile()
    reconciled = time.monotonic()
    store = runtime.store
    holder: sa.Connection | None = None
    consumer = store.dialect != "postgresql"
    if background_sends:
        engine.start_sending()
    changes = _Changes(store.engine, idle_sleep) if store.dialect == "sqlite" else None
    try:
        while stop is None or not stop():
            if not consumer:
                holder = holder or store.engine.connect()
                consumer = bool(holder.execute(sa.text(f"SELECT pg_try_advisory_lock({ADVISORY_LOCK})")).scalar())
                holder.commit()
            read = engine.consume(batch) if consumer else 0
            engine.date_entries()
            stepped = engine.step(batch)
            sent = engine.dispatch()
            if time.monotonic() - reconciled > lease:
                engine.reconcile_soon()
                reconciled = time.monotonic()
            if not (read or stepped or sent):
                if until_idle:
                    with store.engine.connect() as conn:
                        busy = conn.execute(
                            sa.select(sa.func.count())
                            .select_from(sends)
                            .where(sends.c.status.in_(("pending", "sending")))
                        ).scalar_one()
                        due = Q.next_wake(conn)
                    if (
                        not busy
                        and (due is None or due > engine.clock() + 1)
                        and store.max_seq() <= store.consumer(CONSUMER).position
                    ):
                        break
                if changes is not None:
                    changes.wait()
                else:
                    time.sleep(idle_sleep)
    finally:
        engine.stop_sending()
        if changes is not None:
            changes.close()
        if holder is not None:
            if consumer:  # a session lock outlives the connection's return to the pool: give it back
                holder.execute(sa.text(f"SELECT pg_advisory_unlock({ADVISORY_LOCK})"))
                holder.commit()
            holder.close()
    return engine.stats


def _worker_main(
    home: str, sink: str | None, fake: bool, until_idle: bool, lease: float = 30.0, batch: int = 500
) -> None:
    from omniweave.settings import load_settings

    runtime = Runtime(load_settings(home=home))
    try:
        work(runtime, sink=sink, fake=fake, until_idle=until_idle, lease=lease, batch=batch)
    finally:
        runtime.close()


def run(
    runtime: Runtime,
    *,
    workers: int = 1,
    until_idle: bool = False,
    stop: Callable[[], bool] | None = None,
    sink: str | None = None,
    fake: bool = False,
) -> RunReport:
    """Run `workers` worker processes (one in this process when 1; one only on SQLite, which has one writer)."""
    started = time.monotonic()
    note = ""
    if runtime.store.dialect == "sqlite" and workers > 1:
        note = f"SQLite has one writer: running 1 worker instead of {workers}"
        workers = 1
    if workers == 1:
        work(runtime, stop=stop, until_idle=until_idle, sink=sink, fake=fake)
        return RunReport(1, note, time.monotonic() - started)
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker_main, args=(str(runtime.settings.home), sink, fake, until_idle), daemon=True)
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs) and (stop is None or not stop()):
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()
    return RunReport(workers, note, time.monotonic() - started)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m omniweave.activate.service.journeys worker --home H [--sink FILE] [--fake] [--until-idle]`:
    one worker process (the hidden entry point `run` and the crash tests start)."""
    import argparse

    parser = argparse.ArgumentParser(prog="omniweave-journeys-worker")
    parser.add_argument("command", choices=["worker"])
    parser.add_argument("--home", required=True)
    parser.add_argument("--sink")
    parser.add_argument("--fake", action="store_true")
    parser.add_argument("--until-idle", action="store_true")
    parser.add_argument("--lease", type=float, default=30.0, help="seconds a claim or a send in flight is held")
    parser.add_argument("--batch", type=int, default=500, help="runs claimed at a time (done well within a lease)")
    args = parser.parse_args(argv)
    _worker_main(args.home, args.sink, args.fake, args.until_idle, args.lease, args.batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
