"""A/B and multi-arm tests read from the event log: who saw which arm, who converted, for how much.

An experiment is recorded as Segment's `Experiment Viewed` events (properties `experiment_id` and
`variation_id`, else `variation_name`) — sent by a web or app testing tool, or by a journey's split
step. The unit is the person (through the `identities` dataset, as profiles count them); a person
who saw two arms of one experiment is left out of the test and counted as `mixed`. A unit converts
when it has a conversion event (default `Order Completed`) at or after its first exposure, within
`window_days` of it if given; its value is the revenue of those conversions. The statistics are
measure.experiments: z-test and Welch t-test against the control with Holm-adjusted p-values,
Beta-Binomial probability to be best and expected loss, and an mSPRT on the conversion rate with one
look per day of exposures, whose always-valid p-value may be read at any day without peeking bias.

Docs: docs/experiments.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from omniweave.errors import InputError
from omniweave.events import spec
from omniweave.events.properties import order_value
from omniweave.identity.persons import with_person
from omniweave.measure import experiments as stats
from omniweave.runtime import Runtime
from omniweave.storage.engine import Dialect

DEFAULT_TAU = 0.01
"""mSPRT mixing scale: the size of a difference in conversion rate worth finding (1 percentage point)."""


@dataclass(frozen=True)
class ArmFigures:
    """One arm as the log shows it: units exposed, units converted, their value per unit."""

    name: str
    units: int
    conversions: int
    revenue: float
    revenue_per_unit: float


@dataclass(frozen=True)
class ExperimentReport:
    """Everything `omniweave experiments analyze` prints."""

    experiment: str
    conversion_event: str
    window_days: int | None
    control: str
    arms: tuple[ArmFigures, ...]
    mixed_units: int
    conversion: stats.ExperimentResult
    revenue: stats.ExperimentResult | None
    bayesian: stats.BayesianResult
    sequential: dict[str, stats.SequentialResult]


def _exposures(events: ir.Table, d: Dialect) -> ir.Table:
    """The `Experiment Viewed` events with `_experiment` and `_arm` (variation_id, else variation_name)."""
    seen = events.filter(events.event == spec.EXPERIMENT_VIEWED)
    seen = d.with_json_fields(
        seen,
        "properties",
        {"_experiment": "experiment_id", "_variation": "variation_id", "_variation_name": "variation_name"},
    )
    return seen.mutate(_arm=ibis.coalesce(seen._variation, seen._variation_name))


def experiment_units(
    runtime: Runtime,
    experiment: str,
    *,
    conversion_event: str = spec.ORDER_COMPLETED,
    window_days: int | None = None,
    until: datetime | None = None,
) -> pa.Table:
    """One row per person exposed to `experiment`: arm (NULL if they saw several), first exposure,
    first conversion after it (or NULL) and the revenue of their conversions after it."""
    if window_days is not None and window_days <= 0:
        raise InputError(f"got {window_days}; expected a number of days > 0", field="window_days")
    if not runtime.log.has_data("identities"):
        raise InputError(
            "no identities yet: run `omniweave resolve` before analysing an experiment", field="identities"
        )
    warehouse = runtime.warehouse()
    d = warehouse.dialect
    events = warehouse.table("events")
    if until is not None:
        events = events.filter(events.timestamp <= ibis.literal(until, dt.Timestamp(timezone="UTC")))
    ev = with_person(events, warehouse.table("identities"))
    seen = _exposures(ev, d)
    seen = seen.filter(seen._experiment == experiment)
    units = seen.group_by("person_id").aggregate(
        first_seen=seen.timestamp.min(), _arms=seen._arm.nunique(), _arm=seen._arm.min()
    )
    units = units.select(
        "person_id", "first_seen", arm=ibis.cases((units._arms == 1, units._arm), else_=ibis.null("string"))
    )
    bought = ev.filter(ev.event == conversion_event)
    bought = d.with_json_fields(bought, "properties", {"_revenue": "revenue", "_total": "total"})
    bought = bought.select("person_id", at=bought.timestamp, value=order_value(bought._revenue, bought._total))
    joined = units.join(bought, "person_id")
    after = joined.at >= joined.first_seen
    if window_days is not None:
        after &= joined.at < joined.first_seen + ibis.interval(days=window_days)
    joined = joined.filter(after)
    outcome = joined.group_by("person_id").aggregate(converted_at=joined.at.min(), revenue=joined.value.sum())
    result = units.left_join(outcome, "person_id").select(
        "person_id", "arm", "first_seen", "converted_at", revenue=ibis.coalesce(outcome.revenue, 0.0)
    )
    table = result.order_by("person_id").to_pyarrow()
    if len({a for a in table.column("arm").to_pylist() if a is not None}) < 2:
        _refuse_unresolved(events, warehouse.table("identities"), d, experiment)
    return table


def _refuse_unresolved(events: ir.Table, identities: ir.Table, d: Dialect, experiment: str) -> None:
    """Raise when the experiment's arms are in the log but (some) only among events no person holds yet:
    `resolve` has not seen them, so the test would look as if it had fewer arms than it has."""
    seen = _exposures(with_person(events, identities, keep_unknown=True), d)
    seen = seen.filter(seen._experiment == experiment)
    counts = seen.aggregate(
        arms=seen._arm.nunique(),
        resolved_arms=seen._arm.nunique(where=seen.person_id.notnull()),
        unresolved=seen.person_id.isnull().sum(),
    ).to_pyarrow()
    arms, resolved, unresolved = (int(counts.column(c)[0].as_py() or 0) for c in counts.column_names)
    if unresolved and arms > resolved:
        raise InputError(
            f"experiment {experiment!r} has {arms} arm(s) in the log, but {unresolved:,} of its Experiment Viewed "
            f"events belong to no person yet, so only {resolved} arm(s) can be analysed: run `omniweave resolve` "
            "first (it adds the persons of events that arrived since the last run)",
            field="experiment",
        )


def analyze(
    units: pa.Table,
    experiment: str,
    *,
    control: str | None = None,
    alpha: float = 0.05,
    tau: float = DEFAULT_TAU,
    conversion_event: str = spec.ORDER_COMPLETED,
    window_days: int | None = None,
) -> ExperimentReport:
    """The statistics of `experiment_units`' table; `control` defaults to the first arm by name."""
    arm = np.asarray(units.column("arm").to_pylist(), dtype=object)
    clean = np.asarray([a is not None for a in arm], dtype=bool)
    names = sorted({str(a) for a in arm[clean]})
    if len(names) < 2:
        raise InputError(
            f"experiment {experiment!r} has {len(names)} arm(s) in the log ({', '.join(names) or 'none'}); "
            "expected at least 2 (Experiment Viewed events with properties experiment_id and variation_id)",
            field="experiment",
        )
    control = names[0] if control is None else control
    if control not in names:
        raise InputError(f"got {control!r}; expected one of the arms {', '.join(names)}", field="control")
    converted = np.asarray([v is not None for v in units.column("converted_at").to_pylist()])
    revenue = np.asarray(units.column("revenue").to_pylist(), dtype=float)
    first = np.asarray(units.column("first_seen").cast(pa.int64()).to_numpy(), dtype=np.int64)
    conv_at = units.column("converted_at").cast(pa.int64()).to_numpy(zero_copy_only=False)
    figures, conversion_arms, revenue_arms = [], [], []
    for name in names:
        mask = clean & (arm == name)
        n, c, total = int(mask.sum()), int(converted[mask].sum()), float(revenue[mask].sum())
        figures.append(ArmFigures(name, n, c, round(total, 2), total / n if n else 0.0))
        conversion_arms.append(stats.ConversionArm(name, n, c))
        if n >= 2:
            revenue_arms.append(stats.RevenueArm.from_values(name, revenue[mask]))
    conversion = stats.compare_conversions(conversion_arms, control=control, alpha=alpha)
    revenue_result = (
        stats.compare_revenue(revenue_arms, control=control, alpha=alpha) if len(revenue_arms) == len(names) else None
    )
    bayesian = stats.bayesian_conversions(conversion_arms, control=control)
    # one look per day of first exposures: the units exposed by the end of that day, converted by then
    day = 86_400_000_000
    ends = np.unique(first[clean] // day) * day + day
    sequential = {}
    for name in names:
        if name == control:
            continue
        looks: dict[str, list[stats.ConversionArm]] = {control: [], name: []}
        for end in ends:
            for who in (control, name):
                exposed = clean & (arm == who) & (first < end)
                won = exposed & converted & (np.nan_to_num(conv_at, nan=np.inf) < end)
                looks[who].append(stats.ConversionArm(who, int(exposed.sum()), int(won.sum())))
        sequential[name] = stats.sequential_conversion_test(looks[control], looks[name], tau=tau, alpha=alpha)
    return ExperimentReport(
        experiment,
        conversion_event,
        window_days,
        control,
        tuple(figures),
        int((~clean).sum()),
        conversion,
        revenue_result,
        bayesian,
        sequential,
    )


def list_experiments(runtime: Runtime) -> list[tuple[str, int, int]]:
    """(experiment id, arms, events) for every experiment in the log, by id."""
    warehouse = runtime.warehouse()
    seen = _exposures(warehouse.table("events"), warehouse.dialect)
    seen = seen.filter(seen._experiment.notnull())
    grouped = seen.group_by("_experiment").aggregate(arms=seen._arm.nunique(), events=seen.count())
    rows = grouped.order_by("_experiment").to_pyarrow().to_pylist()
    return [(r["_experiment"], int(r["arms"]), int(r["events"])) for r in rows]
