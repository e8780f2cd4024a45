"""The campaign plan of a home (`<home>/plan.toml`): read, checked, saved atomically, and tracked against the KPIs.

`read_plan` never raises for a bad file: it returns what it could read with the problems, so a page can show
them. `save_plan` checks the new plan (a document, or TOML text kept as typed, comments and all) against the KPI
catalogue, the channels and the known personas, refuses to overwrite a file that changed since the editor read
it (`expected_version`), keeps the file it replaces as `plan.toml.previous` and swaps the new one in with a
rename, so a reader sees the old plan or the new one, never half of one. `track_plan` reads the KPI report of
each period the targets need (`kpi_report`, as `omniweave kpis --period <p>`) and hands the values to the pure
tracking of measure/plan.py.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from omniweave.errors import InputError
from omniweave.events import spec
from omniweave.measure.plan import (
    KpiStatus,
    Plan,
    PlanError,
    Point,
    needed_periods,
    parse_plan,
    plan_toml,
    read_toml,
    track,
)
from omniweave.measure.service.reports import KpiReport, KpiRequest, kpi_report
from omniweave.runtime import Runtime

PLAN_FILE = "plan.toml"
PREVIOUS_SUFFIX = ".previous"
LOCK_FILE = ".plan.toml.lock"
CHOOSABLE_CHANNELS = tuple(c for c in spec.CHANNELS if c != "other")
"""The channels a plan may focus on: the event log's channels (events/spec.py), but `other`."""


class PlanConflict(InputError):
    """The plan file changed since the editor read it: saving would lose what someone else saved."""


def catalogue_names() -> tuple[str, ...]:
    """The KPI names a target may name (measure/service/kpis.py CATALOGUE)."""
    from omniweave.measure.service.kpis import CATALOGUE

    return tuple(k.name for k in CATALOGUE)


PERSONA_SAMPLE = 100_000
"""Personas are suggested from at most this many profiles (the clustering reads them into Python: at a
million profiles it ran for more than 20 minutes); up to it, the suggestions are `omniweave personas suggest`'s."""


def known_personas(runtime: Runtime) -> tuple[tuple[str, str], ...]:
    """The personas a plan may name, as (name, id): the project's persona segments (segment files with a
    `persona` field), then those `omniweave personas suggest` proposes from the profiles (none without
    profiles; from a sample of PERSONA_SAMPLE of them past that many). A plan may name a persona by its name or
    its id."""
    from omniweave.segments.service.evaluate import load_segments
    from omniweave.segments.service.personas import suggest_from_profiles

    found: dict[str, str] = {}
    for seg_id, segment in load_segments(runtime.settings).items():
        if segment.persona is not None:
            found.setdefault(segment.name, seg_id)
    if runtime.log.has_data("profiles"):
        for suggested in suggest_from_profiles(runtime, sample=PERSONA_SAMPLE).personas:
            found.setdefault(suggested.persona.name, suggested.persona.id)
    return tuple(found.items())


def persona_names(known: Collection[tuple[str, str]]) -> frozenset[str]:
    """The names and ids of `known_personas`: what a plan's `personas` may hold."""
    return frozenset(n for pair in known for n in pair)


def plan_path(runtime: Runtime) -> Path:
    return runtime.settings.home_path / PLAN_FILE


def version_of(data: bytes | None) -> str:
    """What identifies one saved version of the file (its SHA-256; "" for no file)."""
    return hashlib.sha256(data).hexdigest() if data is not None else ""


@dataclass(frozen=True)
class PlanFile:
    """plan.toml as read: its text and version, the document it holds, and the plan, or the problems."""

    path: Path
    text: str | None  # None: no file yet
    version: str
    document: dict[str, Any] | None
    plan: Plan | None
    problems: tuple[tuple[str, str], ...] = ()
    warnings: tuple[tuple[str, str], ...] = field(default=())  # e.g. a persona no longer known


def check_plan(document: Any, personas: Collection[str] | None, source: str = "the plan") -> Plan:
    """`parse_plan` with this installation's KPI catalogue and channels."""
    return parse_plan(
        document, catalogue=catalogue_names(), channels=CHOOSABLE_CHANNELS, personas=personas, source=source
    )


def read_plan(runtime: Runtime, personas: Collection[str] | None = None) -> PlanFile:
    """The home's plan.toml; with `personas`, names no longer among them are warnings (not problems: a plan
    saved before the personas were suggested again still reads)."""
    path = plan_path(runtime)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return PlanFile(path, None, "", None, None)
    text = data.decode("utf-8", "replace")
    version = version_of(data)
    try:
        document = read_toml(text, PLAN_FILE)
    except PlanError as exc:
        return PlanFile(path, text, version, None, None, tuple(exc.problems))
    try:
        plan = check_plan(document, None, PLAN_FILE)
    except PlanError as exc:
        return PlanFile(path, text, version, document, None, tuple(exc.problems))
    warnings: tuple[tuple[str, str], ...] = ()
    if personas is not None:
        warnings = tuple(
            (f"personas[{i}]", f"{name!r} is no longer a known persona")
            for i, name in enumerate(plan.personas)
            if name not in personas
        )
    return PlanFile(path, text, version, document, plan, (), warnings)


def load_plan(runtime: Runtime) -> Plan:
    """The home's plan, checked (InputError without one, PlanError for a bad one)."""
    found = read_plan(runtime)
    if found.text is None:
        raise InputError(f"no plan yet: {found.path} does not exist (save one on the Plan page)", field="plan")
    if found.plan is None:
        raise PlanError(found.problems, PLAN_FILE)
    return found.plan


def save_plan(
    runtime: Runtime,
    new: Mapping[str, Any] | str,
    *,
    personas: Collection[str] | None,
    expected_version: str | None = None,
) -> PlanFile:
    """Check `new` (a document, or TOML text written as given) and write it as the home's plan.toml.

    PlanError (every problem) leaves the file as it was; so does PlanConflict when `expected_version` is given
    and the file is no longer that version (someone saved in between). The replaced file is kept as
    plan.toml.previous."""
    path = plan_path(runtime)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(LOCK_FILE), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two saves at once: the version check and the write are one step
        try:
            old: bytes | None = path.read_bytes()
        except FileNotFoundError:
            old = None
        if expected_version is not None and version_of(old) != expected_version:
            raise PlanConflict(
                "the plan was saved by someone else since you opened it; your changes are not saved (they are "
                "still in the form): reload the page to see the saved plan, then apply them again",
                field="version",
            )
        if isinstance(new, str):
            document: Any = read_toml(new, PLAN_FILE)
            plan = check_plan(document, personas, PLAN_FILE)
            text = new if new.endswith("\n") else new + "\n"
        else:
            plan = check_plan(new, personas)
            text = plan_toml(plan)
        if old is not None:
            _write_atomically(path.with_name(PLAN_FILE + PREVIOUS_SUFFIX), old)
        data = text.encode("utf-8")
        _write_atomically(path, data)
    return PlanFile(path, text, version_of(data), read_toml(text), plan)


def _write_atomically(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


# --- tracking -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanTracking:
    """Every KPI target of a plan with its status; `counts` per status."""

    plan: Plan
    kpis: tuple[KpiStatus, ...]

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for k in self.kpis:
            out[k.status] = out.get(k.status, 0) + 1
        return out

    def goal_kpis(self, goal: int) -> tuple[KpiStatus, ...]:
        return tuple(k for k in self.kpis if k.goal == goal)

    def records(self) -> list[dict[str, Any]]:
        """One record per KPI target (for CSV and JSON)."""
        return [
            {
                "goal": k.goal_name,
                "kpi": k.kpi,
                "period": k.period,
                "direction": k.direction,
                "target": k.target,
                "by": k.by.isoformat(),
                "target_period": k.target_period.isoformat(),
                "current": k.current,
                "current_period": k.current_period.isoformat() if k.current_period else None,
                "projection": k.projection,
                "slope": k.slope,
                "gap": k.gap,
                "periods_used": len(k.basis),
                "status": k.status,
            }
            for k in self.kpis
        ]


def kpi_series(report: KpiReport) -> dict[str, list[Point]]:
    """The KPI report's values without a breakdown, per KPI."""
    out: dict[str, list[Point]] = {}
    for row in report.rows:
        if row["dimension"] != "all" or row["value"] is None:
            continue
        start = row["period"]
        day = date.fromisoformat(start) if isinstance(start, str) else start
        out.setdefault(row["kpi"], []).append(Point(day, float(row["value"]), bool(row.get("partial"))))
    return out


def track_plan(runtime: Runtime, plan: Plan, report: Callable[[str], KpiReport] | None = None) -> PlanTracking:
    """The plan's KPI targets against the KPI report of each period they need. `report(period)` gives that
    report (default: `kpi_report` of the whole catalogue for the period, as `omniweave kpis --period`), so a
    shell may hand in one it has cached."""
    fetch = report or (lambda period: kpi_report(runtime, KpiRequest(period=period)))
    series: dict[tuple[str, str], list[Point]] = {}
    for period in needed_periods(plan):
        for kpi, points in kpi_series(fetch(period)).items():
            series[(kpi, period)] = points
    return PlanTracking(plan, track(plan, series))
