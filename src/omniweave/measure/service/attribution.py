"""Attribution as one service operation: a request in, a frozen report out.

The CLI, the REST API and the dashboard all call `attribution_report` and show its `to_dict()` (or its
`records()` as CSV), so they credit the same numbers. The paths come from a paths file or are built
from the event log (measure/service/paths.py), where spend, ROAS and ROI come with them.

A paths file is read by `read_paths_file` (measure/service/paths_file.py): Arrow parses the CSV and
identical paths are added up (a file with one row per journey holds far fewer distinct paths than rows),
so the models run on the distinct paths. Nothing here imports DuckDB or the event-log machinery (Ibis,
the runtime's stores) until the event log is asked for: `omniweave attribution --paths` starts fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omniweave.errors import InputError
from omniweave.measure.attribution import (
    DEFAULT_DEDUP_MINUTES,
    DEFAULT_LOOKBACK_DAYS,
    MODELS,
    Attribution,
    PathsTable,
    attribute,
)
from omniweave.measure.service.paths_file import aggregate_rows, read_paths_file
from omniweave.storage.guard import guarded

if TYPE_CHECKING:
    from omniweave.measure.service.paths import Journeys, Return
    from omniweave.runtime import Runtime

__all__ = ["AttributionReport", "AttributionRequest", "aggregate_rows", "attribution_report", "read_paths_file"]


ROUNDING = 1e-9
"""Credits, effects and returns closer to zero than this are shown as 0 (never as -0.00 or -1e-13)."""


def clean(number: float) -> float:
    """`number`, or 0.0 when it is rounding noise around zero; never -0.0."""
    return 0.0 if abs(number) < ROUNDING else number + 0.0


def model_names(model: str, field: str = "model") -> tuple[str, ...]:
    """The models `model` names: one of MODELS, or `all` for every one. Anything else is an InputError."""
    if model == "all":
        return MODELS
    if model not in MODELS:
        raise InputError(f"got {model!r}; expected one of {', '.join(MODELS)} or all", field=field)
    return (model,)


@dataclass(frozen=True)
class AttributionRequest:
    """What to attribute and how: a paths file (`paths`) or the event log, the models and their options."""

    models: tuple[str, ...] = MODELS
    paths: Path | None = None
    half_life: float = 1.0
    allocation: str = "global"
    order: int = 1
    value_effects: str = "value"
    lookback_days: float = DEFAULT_LOOKBACK_DAYS
    dedup_minutes: float = DEFAULT_DEDUP_MINUTES
    by: str = "channel"
    since: datetime | None = None
    until: datetime | None = None
    exposures: bool = False


@dataclass(frozen=True)
class AttributionReport:
    """Conversions and value credited by each model, with spend, ROAS and ROI when built from the log.

    `journeys` is None for a paths file; `labels` are the channels (or campaigns) in the order shown:
    those on the paths, then those that only have spend."""

    request: AttributionRequest
    table: PathsTable
    results: tuple[Attribution, ...]
    journeys: Journeys | None = None
    earned: Mapping[str, Mapping[str, Return]] = field(default_factory=dict)

    @property
    def from_log(self) -> bool:
        """True when the paths were built from the event log (so spend, ROAS and ROI are known)."""
        return self.journeys is not None

    @property
    def spend(self) -> dict[str, float]:
        """Spend per channel (or campaign) over the period; empty for a paths file."""
        return dict(self.journeys.spend) if self.journeys is not None else {}

    @property
    def labels(self) -> tuple[str, ...]:
        """Channels (or campaigns) in the order shown: every label on the paths (and, from the event log,
        with spend), sorted by name (case aside), a campaign's stand-in `(channel)` for touches without a
        campaign after the named ones."""
        channels = tuple(self.table.channels)
        return tuple(
            sorted({*channels, *self.spend}, key=lambda label: (label.startswith("("), label.casefold(), label))
        )

    @property
    def total_null(self) -> float:
        """Journeys that ended without an order."""
        return self.table.total_null

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON values (the `--format json` document and the API response)."""
        r = self.request
        document: dict[str, Any] = {
            "total_conversions": self.table.total_conversions,
            "total_conversion_value": self.table.total_value,
            "half_life": r.half_life,
            "allocation": r.allocation,
            "order": r.order,
            "value_effects": r.value_effects,
        }
        j = self.journeys
        if j is not None:
            document |= {
                "source": "event log",
                "by": j.by,
                "lookback_days": j.lookback_days,
                "dedup_minutes": j.dedup_minutes,
                "exposures": j.exposures,
                "since": j.since.isoformat() if j.since else None,
                "until": j.until.isoformat() if j.until else None,
                "untouched_conversions": j.untouched_conversions,
                "untouched_value": j.untouched_value,
                "total_null": self.total_null,
                "spend": self.spend,
            }
        shown = self.labels
        models: dict[str, Any] = {}
        for result in self.results:
            entry: dict[str, Any] = {
                "channels": {
                    ch: {
                        "conversions": clean(result.conversions.get(ch, 0.0)),
                        "value": clean(result.value.get(ch, 0.0)),
                    }
                    for ch in shown
                }
            }
            if result.removal_effects is not None:
                entry["removal_effects"] = {ch: clean(x) for ch, x in result.removal_effects.items()}
            if result.value_removal_effects is not None:
                entry["value_removal_effects"] = {ch: clean(x) for ch, x in result.value_removal_effects.items()}
            if j is not None:
                entry["returns"] = {
                    label: {"spend": x.spend, "value": clean(x.value), "roas": clean(x.roas), "roi": clean(x.roi)}
                    for label, x in self.earned[result.model].items()
                }
            models[result.model] = entry
        document["models"] = models
        return document

    def columns(self) -> tuple[str, ...]:
        """The CSV header: model, channel, conversions, value (and spend, roas, roi from the log)."""
        base = ("model", "channel", "conversions", "value")
        return (*base, "spend", "roas", "roi") if self.from_log else base

    def records(self) -> list[dict[str, Any]]:
        """One record per model and channel (the `--format csv` rows)."""
        out: list[dict[str, Any]] = []
        for result in self.results:
            for ch in self.labels:
                record: dict[str, Any] = {
                    "model": result.model,
                    "channel": ch,
                    "conversions": clean(result.conversions.get(ch, 0.0)),
                    "value": clean(result.value.get(ch, 0.0)),
                }
                if self.from_log:
                    x = self.earned[result.model].get(ch)
                    record |= {"spend": x.spend, "roas": clean(x.roas), "roi": clean(x.roi)} if x else {}
                out.append(record)
        return out


def attribution_report(runtime: Runtime | None, request: AttributionRequest) -> AttributionReport:
    """Credit the conversions of a paths file, or of the journeys in the event log, with every model asked
    for; from the log, also each label's spend, ROAS and ROI per model. A paths file needs no runtime
    (None is accepted for it).

    Raises InputError for a bad option, a bad paths file, or a home without persons yet; MemoryLimitError
    (naming the stage) when it runs out of memory."""
    for name in request.models:
        model_names(name)
    if request.paths is None:
        return _report_from_log(runtime, request)
    try:  # no DuckDB here: the memory guard (which imports it) is loaded only for an error to word
        return _report(request, read_paths_file(request.paths), None)
    except MemoryError:
        from omniweave.storage.engine import memory_guard

        with memory_guard("attribution", runtime.engine.memory_limit if runtime is not None else None):
            raise


@guarded("attribution")
def _report_from_log(runtime: Runtime | None, request: AttributionRequest) -> AttributionReport:
    from omniweave.measure.service.paths import journeys_from_log

    if runtime is None:
        raise InputError("the event log needs an opened home; pass --paths FILE.csv to attribute a file")
    journeys = journeys_from_log(
        runtime,
        lookback_days=request.lookback_days,
        dedup_minutes=request.dedup_minutes,
        by=request.by,
        since=request.since,
        until=request.until,
        exposures=request.exposures,
    )
    return _report(request, journeys.paths, journeys)


def _report(request: AttributionRequest, table: PathsTable, journeys: Journeys | None) -> AttributionReport:
    """Run the models asked for on `table` (a file's paths, or those of the `journeys` built from the log)."""
    results = tuple(
        attribute(
            table,
            name,
            half_life=request.half_life,
            allocation=request.allocation,
            order=request.order,
            value_effects=request.value_effects,
        )
        for name in request.models
    )
    earned: dict[str, dict[str, Return]] = {}
    if journeys is not None:
        from omniweave.measure.service.paths import returns

        earned = {r.model: returns(r, journeys.spend) for r in results}
    return AttributionReport(request=request, table=table, results=results, journeys=journeys, earned=earned)
