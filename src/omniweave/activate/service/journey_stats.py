"""Seeing journeys: the catalog of journey files, per-node stats with the holdout's lift, and `explain`.

- `journey_files(settings)` / `load_journey_file(path)` / `find_journey(settings, name_or_file)`: the built-in
  journeys (`activate/journeys/library/`) and the project's (`<project>/journeys/*.yaml|toml`, which win on
  the same name), parsed with every problem reported at once.
- `list_journeys(runtime)`: each journey known from a file or published, its published version and runs
  by status.
- `journey_stats(runtime, name, compare=…)`: per node entered, sent, skipped by reason, converted (from
  `journey_steps`), and the holdout's conversion rates; `compare` is the experiments' two-proportion test,
  handed in by the shells (the activate stage does not import measure).
- `explain(runtime, identifier, journey=…)`: the person of any identifier, each of their runs (entry, every
  step with its outcome and reason) and every policy decision about their sends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from omniweave.activate.journeys.definition import JourneyInvalid, parse_journey_text
from omniweave.activate.journeys.model import Journey
from omniweave.activate.service import messages as msgs
from omniweave.activate.service.policy import decisions
from omniweave.errors import InputError
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.storage.ops import journeys as Q
from omniweave.storage.ops.tables.journeys import journey_runs, journey_steps

SUFFIXES = (".yaml", ".yml", ".toml")

# --- files -------------------------------------------------------------------------------------------


def journeys_folder(settings: Settings) -> Path:
    """The project's journey files: `journeys/` beside `segments/` and `messages/`."""
    return msgs.project_folder(settings) / "journeys"


def builtin_paths() -> list[Path]:
    """The journey files shipped with omniweave."""
    folder = resources.files("omniweave.activate.journeys") / "library"
    return sorted(Path(str(e)) for e in folder.iterdir() if e.name.endswith(SUFFIXES))


def project_paths(settings: Settings) -> list[Path]:
    folder = journeys_folder(settings)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file())


def load_journey_file(path: Path, settings: Settings | None = None) -> Journey:
    """One journey file (YAML or TOML) as a Journey; JourneyInvalid naming every problem, or an unreadable file.

    With `settings`, each send's message must be one the project knows (built-in or its `messages/`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read journey file {path}: {exc.strerror or exc}", field="file") from None
    known = frozenset(msgs.load_messages(settings)) if settings is not None else None
    key = (str(path), text, known)
    journey = _PARSED.get(key)
    if journey is None:
        fmt = "toml" if path.suffix == ".toml" else "yaml"
        journey = parse_journey_text(
            text, str(path), fmt=fmt, default_name=path.stem, messages=set(known) if known is not None else None
        )
        if len(_PARSED) >= 256:
            _PARSED.clear()
        _PARSED[key] = journey
    return journey


_PARSED: dict[tuple[str, str, frozenset[str] | None], Journey] = {}
"""Journey files parsed before, by path, text and the messages known (the dashboard lists every journey on each
view: parsing YAML in Python cost about 0.1 s a file)."""


def journey_files(settings: Settings) -> dict[str, Path]:
    """Every journey file by name: built-in, then the project's (the project wins on the same name)."""
    out = {p.stem: p for p in builtin_paths()}
    out.update({p.stem: p for p in project_paths(settings)})
    return out


def find_journey(settings: Settings, name_or_file: str) -> Journey:
    """A journey file given by path, or by the name of a built-in or project journey (InputError if neither)."""
    path = Path(name_or_file)
    if path.suffix in SUFFIXES and path.is_file():
        return load_journey_file(path, settings)
    files = journey_files(settings)
    if name_or_file not in files:
        raise InputError(
            f"no journey file {name_or_file!r}: expected a path to a .yaml/.toml file or one of "
            f"{', '.join(sorted(files))} (project files in {journeys_folder(settings)})",
            field="journey",
        )
    return load_journey_file(files[name_or_file], settings)


@dataclass(frozen=True)
class JourneySummary:
    """A journey as `journeys list` shows it."""

    name: str
    source: str  # builtin | project | published (no file)
    description: str
    entry: str
    published_version: int | None
    runs: dict[str, int]
    problems: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _entry_text(j: Journey) -> str:
    e = j.entry
    if e.kind == "event":
        return f"event {e.event}"
    if e.kind in ("segment_entered", "segment_exited"):
        return f"{e.kind} {e.segment}"
    if e.kind == "date":
        return f"date {e.trait}"
    return e.kind


def list_journeys(runtime: Runtime) -> list[JourneySummary]:
    """Built-in and project journeys and any published journey without a file: published version, runs by status."""
    with runtime.store.engine.connect() as conn:
        published = Q.latest_versions(conn)
        counts: dict[str, dict[str, int]] = {}
        query = sa.select(journey_runs.c.journey, journey_runs.c.status, sa.func.count()).group_by(
            journey_runs.c.journey, journey_runs.c.status
        )
        for name, status, n in conn.execute(query):
            counts.setdefault(str(name), {})[str(status)] = int(n)
    builtin = {p.stem for p in builtin_paths()}
    out: list[JourneySummary] = []
    for name, path in sorted(journey_files(runtime.settings).items()):
        source = "project" if name not in builtin or path.parent == journeys_folder(runtime.settings) else "builtin"
        version = published[name][0] if name in published else None
        try:
            j = load_journey_file(path, runtime.settings)
        except JourneyInvalid as exc:
            out.append(
                JourneySummary(name, source, "(invalid file)", "", version, counts.get(name, {}), len(exc.problems))
            )
            continue
        out.append(JourneySummary(name, source, j.description, _entry_text(j), version, counts.get(name, {})))
    for name in sorted(set(published) - {s.name for s in out}):
        out.append(JourneySummary(name, "published", "", "", published[name][0], counts.get(name, {})))
    return out


def published_names(runtime: Runtime) -> dict[str, int]:
    with runtime.store.engine.connect() as conn:
        return {name: v for name, (v, _) in Q.latest_versions(conn).items()}


# --- stats -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeStats:
    node: str
    entered: int = 0
    sent: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    converted: int = 0
    other: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class JourneyStats:
    """Per node: entered (runs that reached it), sent, skipped by reason, converted; runs by status; the holdout."""

    journey: str
    runs: dict[str, int]
    nodes: tuple[NodeStats, ...]
    treated: tuple[int, int]  # (runs, converted) of the runs that get messages
    held_out: tuple[int, int]  # (runs, converted) of the holdout
    lift: dict[str, Any] | None = None
    lift_note: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["nodes"] = [n.to_dict() for n in self.nodes]
        out["treated"] = {"runs": self.treated[0], "converted": self.treated[1]}
        out["held_out"] = {"runs": self.held_out[0], "converted": self.held_out[1]}
        return out


Compare = Callable[[tuple[str, int, int], tuple[str, int, int]], Mapping[str, Any]]
"""(control name, runs, conversions), (treatment name, runs, conversions) -> the test's result as a dict."""

_ARRIVALS = ("entered", "waited", "woken", "timeout", "branched", "assigned", "sent", "skipped", "rescheduled")


def journey_stats(runtime: Runtime, name: str, *, compare: Compare | None = None) -> JourneyStats:
    """The stats of journey `name` (every version) from journey_steps and journey_runs."""
    with runtime.store.engine.connect() as conn:
        known = name in Q.latest_versions(conn)
        runs = Q.run_counts(conn, name)
        if not known and not runs:
            raise InputError(
                f"no published journey {name!r}: publish it first (`omniweave journeys publish {name}`)",
                field="journey",
            )
        steps = conn.execute(
            sa.select(journey_steps.c.run_id, journey_steps.c.node, journey_steps.c.outcome, journey_steps.c.reason)
            .where(journey_steps.c.journey == name)
            .order_by(journey_steps.c.id)
        ).all()
        ended = conn.execute(
            sa.select(journey_runs.c.id, journey_runs.c.status).where(journey_runs.c.journey == name)
        ).all()
    order: list[str] = []
    entered: dict[str, set[str]] = {}
    sent: dict[str, int] = {}
    skipped: dict[str, dict[str, int]] = {}
    converted: dict[str, int] = {}
    other: dict[str, dict[str, int]] = {}
    held: set[str] = set()
    for run_id, node, outcome, reason in steps:
        if node not in entered:
            order.append(node)
            entered[node] = set()
        if outcome in _ARRIVALS or outcome == "held_out":
            entered[node].add(run_id)
        if outcome == "sent":
            sent[node] = sent.get(node, 0) + 1
        elif outcome == "skipped":
            by = skipped.setdefault(node, {})
            by[reason or "?"] = by.get(reason or "?", 0) + 1
        elif outcome == "converted":
            converted[node] = converted.get(node, 0) + 1
        elif outcome not in _ARRIVALS:
            by = other.setdefault(node, {})
            by[outcome] = by.get(outcome, 0) + 1
        if outcome == "held_out" or (outcome == "entered" and reason and "holdout" in reason):
            held.add(run_id)
    nodes = tuple(
        NodeStats(n, len(entered[n]), sent.get(n, 0), skipped.get(n, {}), converted.get(n, 0), other.get(n, {}))
        for n in order
    )
    status = {str(rid): str(s) for rid, s in ended}
    treated_ids = [r for r in status if r not in held]
    treated = (len(treated_ids), sum(status[r] == "converted" for r in treated_ids))
    held_out = (len(held), sum(status.get(r) == "converted" for r in held))
    lift, note = None, ""
    if compare is None:
        note = "no test asked for"
    elif held_out[0] == 0 or treated[0] == 0:
        note = "no holdout runs yet" if held_out[0] == 0 else "no treated runs yet"
    else:
        lift = dict(compare(("held_out", *held_out), ("treated", *treated)))
    return JourneyStats(name, runs, nodes, treated, held_out, lift, note)


# --- explain -----------------------------------------------------------------------------------------


def resolve_person(runtime: Runtime, identifier: str) -> str:
    """The person id of any identifier (a person id, user id, anonymous id, e-mail, phone … as the identities
    table holds it; `kind:value` also works); InputError naming the identifier when nobody has it."""
    text = identifier.strip()
    if not text or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise InputError(f"expected a person id or an identifier (printable text); got {identifier!r}", field="person")
    kind, _, value = text.partition(":")
    if runtime.log.has_data("identities"):
        ids = runtime.warehouse().table("identities")
        for expr in (
            ids.filter(ids.person_id == text),
            ids.filter(ids.value == text),
            ids.filter((ids.kind == kind) & (ids.value == value)) if value else None,
            ids.filter(ids.value == text.lower()),
        ):
            if expr is None:
                continue
            found = expr.select("person_id").limit(1).to_pyarrow().column("person_id").to_pylist()
            if found:
                return str(found[0])
    with runtime.store.engine.connect() as conn:  # a person the engine knows (API entries need no identity)
        hit = conn.execute(
            sa.select(journey_runs.c.person_id).where(journey_runs.c.person_id == text).limit(1)
        ).scalar()
    if hit is not None:
        return str(hit)
    raise InputError(
        f"no person known by {identifier!r}: expected a person id, user id, anonymous id, e-mail or phone "
        "from the identities (run `omniweave resolve` after new events arrive)",
        field="person",
    )


@dataclass(frozen=True)
class RunExplanation:
    run_id: str
    journey: str
    version: int
    entry_key: str
    entered_at: float
    status: str
    node: str
    end_reason: str | None
    steps: list[dict[str, Any]]
    decisions: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class PersonJourneys:
    """Why did (or didn't) this person get this message: each run with its steps and policy decisions."""

    identifier: str
    person_id: str
    runs: tuple[RunExplanation, ...]
    other_decisions: list[dict[str, Any]]  # decisions about sends not from these runs (messages send, …)

    def to_dict(self) -> dict[str, Any]:
        return {
            "identifier": self.identifier,
            "person_id": self.person_id,
            "runs": [r.to_dict() for r in self.runs],
            "other_decisions": self.other_decisions,
        }


def explain(runtime: Runtime, identifier: str, *, journey: str | None = None) -> PersonJourneys:
    """Every run of the person of `identifier` (of `journey` only, when given), oldest first."""
    person = resolve_person(runtime, identifier)
    query = sa.select(journey_runs).where(journey_runs.c.person_id == person).order_by(journey_runs.c.entered_at)
    if journey is not None:
        query = query.where(journey_runs.c.journey == journey)
    with runtime.store.engine.connect() as conn:
        runs = [dict(m) for m in conn.execute(query).mappings()]
        steps = Q.steps_of(conn, person_id=person)
    verdicts = [d.to_dict() for d in decisions(runtime.store.engine, person_id=person)]
    used: set[int] = set()
    out = []
    for run in runs:
        rid = str(run["id"])
        mine = [i for i, d in enumerate(verdicts) if str(d["key"]).endswith(f":{rid}")]
        used.update(mine)
        out.append(
            RunExplanation(
                rid,
                str(run["journey"]),
                int(run["version"]),
                str(run["entry_key"]),
                float(run["entered_at"]),
                str(run["status"]),
                str(run["node"]),
                run["end_reason"],
                [
                    {k: s[k] for k in ("node", "outcome", "reason", "at", "version")}
                    for s in steps
                    if s["run_id"] == rid
                ],
                [verdicts[i] for i in mine],
            )
        )
    others = [d for i, d in enumerate(verdicts) if i not in used and (journey is None or d.get("journey") == journey)]
    return PersonJourneys(identifier, person, tuple(out), others)


__all__ = [
    "JourneyStats",
    "JourneySummary",
    "NodeStats",
    "PersonJourneys",
    "RunExplanation",
    "builtin_paths",
    "explain",
    "find_journey",
    "journey_files",
    "journey_stats",
    "journeys_folder",
    "list_journeys",
    "load_journey_file",
    "resolve_person",
]


def resolve_persons(runtime: Runtime, identifiers: list[str]) -> list[str]:
    """`resolve_person` for many identifiers at once (the identities read once); InputError naming the first
    unknown one by its record number (1-based)."""
    known: dict[str, str] = {}
    if runtime.log.has_data("identities"):
        table = runtime.warehouse().table("identities").select("kind", "value", "person_id").to_pyarrow()
        for kind, value, person in zip(
            *(table.column(c).to_pylist() for c in ("kind", "value", "person_id")), strict=True
        ):
            known[str(person)] = str(person)
            known.setdefault(str(value), str(person))
            known[f"{kind}:{value}"] = str(person)
    out = []
    for i, text in enumerate(identifiers, start=1):
        person = known.get(text.strip()) or known.get(text.strip().lower())
        if person is None:
            raise InputError(
                f"no person known by {text!r}: expected a person id, user id, anonymous id, e-mail or phone "
                "from the identities",
                field="person",
                record=i,
            )
        out.append(person)
    return out
