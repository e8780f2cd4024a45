"""Attribution as one service operation: a request in, a frozen report out.

The CLI, the REST API and the dashboard all call `attribution_report` and show its `to_dict()` (or its
`records()` as CSV), so they credit the same numbers. The paths come from a paths file or are built
from the event log (measure/service/paths.py), where spend, ROAS and ROI come with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from omniweave.errors import InputError
from omniweave.measure.attribution import MODELS, Attribution, PathsTable, attribute, read_paths_csv
from omniweave.measure.service.paths import DEFAULT_DEDUP_MINUTES, DEFAULT_LOOKBACK_DAYS, Journeys, Return
from omniweave.runtime import Runtime


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
        """Channels (or campaigns) in the order shown: those on the paths, then those with spend only."""
        channels = tuple(self.table.channels)
        return (*channels, *(label for label in sorted(self.spend) if label not in channels))

    @property
    def total_null(self) -> float:
        """Journeys that ended without an order."""
        return sum(row.nulls for row in self.table.rows)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON values (the `--format json` document and the API response)."""
        r = self.request
        document: dict[str, Any] = {
            "total_conversions": self.table.total_conversions,
            "total_conversion_value": self.table.total_value,
            "half_life": r.half_life,
            "allocation": r.allocation,
            "order": r.order,
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
        shown = self.labels if j is not None else tuple(self.table.channels)
        models: dict[str, Any] = {}
        for result in self.results:
            entry: dict[str, Any] = {
                "channels": {
                    ch: {"conversions": result.conversions.get(ch, 0.0), "value": result.value.get(ch, 0.0)}
                    for ch in shown
                }
            }
            if result.removal_effects is not None:
                entry["removal_effects"] = result.removal_effects
            if j is not None:
                entry["returns"] = {
                    label: {"spend": x.spend, "value": x.value, "roas": x.roas, "roi": x.roi}
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
            for ch in self.labels if self.from_log else self.table.channels:
                record: dict[str, Any] = {
                    "model": result.model,
                    "channel": ch,
                    "conversions": result.conversions.get(ch, 0.0),
                    "value": result.value.get(ch, 0.0),
                }
                if self.from_log:
                    x = self.earned[result.model].get(ch)
                    record |= {"spend": x.spend, "roas": x.roas, "roi": x.roi} if x else {}
                out.append(record)
        return out


def attribution_report(runtime: Runtime, request: AttributionRequest) -> AttributionReport:
    """Credit the conversions of a paths file, or of the journeys in the event log, with every model asked
    for; from the log, also each label's spend, ROAS and ROI per model.

    Raises InputError for a bad option, a bad paths file, or a home without persons yet."""
    from omniweave.measure.service.paths import journeys_from_log, returns

    for name in request.models:
        model_names(name)
    journeys = None
    if request.paths is not None:
        table = read_paths_csv(request.paths)
    else:
        journeys = journeys_from_log(
            runtime,
            lookback_days=request.lookback_days,
            dedup_minutes=request.dedup_minutes,
            by=request.by,
            since=request.since,
            until=request.until,
            exposures=request.exposures,
        )
        table = journeys.paths
    results = tuple(
        attribute(table, name, half_life=request.half_life, allocation=request.allocation, order=request.order)
        for name in request.models
    )
    earned = {r.model: returns(r, journeys.spend) for r in results} if journeys is not None else {}
    return AttributionReport(request=request, table=table, results=results, journeys=journeys, earned=earned)
