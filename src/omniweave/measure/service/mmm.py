"""The media-mix model from the log: revenue per day (or week, per store region) and spend per channel.

Revenue is the value of the `Order Completed` events (online, in store, or both); with `by="region"` it is
the in-store revenue per store region (the `stores` dataset's city), and a spend row whose campaign ends in
`@<city>` is spent in that city only (other spend is split over the regions by their share of revenue).
Spend is the `spend` dataset per channel; channels under `MIN_SHARE` of the spend are left out (listed).
The baseline gets the UK's retail peaks as holiday indicators (Black Friday to Cyber Monday, the week
before Christmas, the Boxing Day sales). Lift tests in the log (the `lift_tests` dataset: a channel's measured
incremental revenue over some days, ± its standard error) calibrate the fit. measure.mmm fits the model; the fit
is saved as the warehouse datasets `mmm_fit` (the whole result as one JSON document), `mmm_channels` and
`mmm_series` (for the dashboard), and read back by `omniweave mmm report` and `omniweave budget`. docs/mmm.md.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from omniweave.errors import InputError
from omniweave.events import spec
from omniweave.events.properties import order_value
from omniweave.measure.mmm import LiftTest, MediaCurve, MediaData, MediaParams, MmmFit, fit_mmm
from omniweave.runtime import Runtime
from omniweave.storage.guard import guarded
from omniweave.storage.warehouse import write_dataset

GRANULARITIES = {"day": 1, "week": 7}
REVENUES = ("all", "store", "online")
MIN_SHARE = 0.005
DATASETS = ("mmm_fit", "mmm_channels", "mmm_series")


@dataclass(frozen=True)
class MmmRequest:
    """Which revenue, over which days, per what period, per region or not; the fit's options."""

    since: date | None = None
    until: date | None = None  # exclusive
    granularity: str = "day"
    by: str | None = None  # None or "region"
    revenue: str = "all"
    seed: int = 0
    bootstrap: int = 100
    holdout: float = 0.15
    delayed: bool = False
    lift_tests: bool = True  # calibrate with the log's lift tests (the `lift_tests` dataset), if any


@dataclass(frozen=True)
class MmmReport:
    """A fit with what it was fitted on: the request, the first day, the channels left out."""

    request: MmmRequest
    first_day: date
    fit: MmmFit
    left_out: dict[str, float] = field(default_factory=dict)  # channel -> its spend (too small to model)
    lift_tests: tuple[dict[str, Any], ...] = ()  # the log's lift tests, each with what the fit made of it

    def records(self) -> list[dict[str, Any]]:
        """One row per channel: spend, contribution, ROI, marginal ROI (each with its interval), half-life."""
        rows = []
        for c, r in self.fit.channels.items():
            rows.append(
                {
                    "channel": c,
                    "spend": r.spend,
                    "contribution": r.contribution,
                    "contribution_low": r.contribution_interval[0],
                    "contribution_high": r.contribution_interval[1],
                    "roi": r.roi,
                    "roi_low": r.roi_interval[0],
                    "roi_high": r.roi_interval[1],
                    "marginal_roi": r.marginal_roi,
                    "marginal_roi_low": r.marginal_roi_interval[0],
                    "marginal_roi_high": r.marginal_roi_interval[1],
                    "half_life": r.half_life,
                    "decay": r.params.decay,
                    "half_saturation": r.params.half_saturation,
                    "shape": r.params.shape,
                    "peak": r.params.peak,
                    "warnings": "; ".join(r.warnings),
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON values: request, quality, channels (with curves), series, replicate curves."""
        f = self.fit
        return {
            "request": {k: (v.isoformat() if isinstance(v, date) else v) for k, v in vars(self.request).items()},
            "first_day": self.first_day.isoformat(),
            "periods": list(f.periods),
            "units": list(f.units),
            "period_days": f.period_days,
            "r_squared": f.r_squared,
            "mape": f.mape,
            "r_squared_holdout": f.r_squared_holdout,
            "mape_holdout": f.mape_holdout,
            "holdout_periods": f.holdout_periods,
            "sigma": f.sigma,
            "knot_ridge": f.knot_ridge,
            "roi_scale": f.roi_scale,
            "seed": f.seed,
            "bootstrap": f.bootstrap,
            "confidence": f.confidence,
            "left_out": self.left_out,
            "lift_tests": list(self.lift_tests),
            "channels": self.records(),
            "curves": {c: _curve_doc(r.curve) for c, r in f.channels.items()},
            "series": {
                "actual": f.actual.tolist(),
                "fitted": f.fitted.tolist(),
                "baseline": f.baseline.tolist(),
                **{f"contribution_{c}": v.tolist() for c, v in f.contributions.items()},
            },
            "replicates": [{c: _curve_doc(v) for c, v in rep.items()} for rep in f.replicate_curves],
        }


def _curve_doc(curve: MediaCurve) -> dict[str, Any]:
    p = curve.params
    return {
        "beta": curve.beta,
        "decay": p.decay,
        "half_saturation": p.half_saturation,
        "shape": p.shape,
        "peak": p.peak,
        "delayed": p.delayed,
        "max_lag": p.max_lag,
        "shares": list(curve.shares),
        "mix": list(curve.mix),
    }


def _curve_of(channel: str, doc: dict[str, Any]) -> MediaCurve:
    params = MediaParams(
        doc["decay"], doc["half_saturation"], doc["shape"], doc["peak"], doc["delayed"], doc["max_lag"]
    )
    return MediaCurve(channel, doc["beta"], params, tuple(doc["shares"]), tuple(doc["mix"]))


@dataclass(frozen=True)
class SavedFit:
    """What the budget and the report need from a saved fit: curves, replicate curves, current spend."""

    document: dict[str, Any]

    def curves(self) -> dict[str, MediaCurve]:
        """The point-estimate curves per channel."""
        return {c: _curve_of(c, d) for c, d in self.document["curves"].items()}

    def replicates(self) -> list[dict[str, MediaCurve]]:
        """The bootstrap replicates' curves."""
        return [{c: _curve_of(c, d) for c, d in rep.items()} for rep in self.document["replicates"]]

    def current_spend(self) -> dict[str, float]:
        """Mean spend per period per channel over the fitted history."""
        periods = len(self.document["periods"])
        return {r["channel"]: r["spend"] / periods for r in self.document["channels"]}


# ---------------------------------------------------------------- reading the log


def _holidays(days: list[date]) -> np.ndarray:
    """[day, 3] indicators: Black Friday to Cyber Monday, 18-24 December, 26-31 December."""
    out = np.zeros((len(days), 3))
    for i, d in enumerate(days):
        november = date(d.year, 11, 1)
        black_friday = november + timedelta(days=(4 - november.weekday()) % 7 + 21)
        out[i, 0] = black_friday <= d <= black_friday + timedelta(days=3)
        out[i, 1] = d.month == 12 and 18 <= d.day <= 24
        out[i, 2] = d.month == 12 and d.day >= 26
    return out


def _promotions(runtime: Runtime, days: list[date], step: int) -> np.ndarray:
    """[period, k] indicators of the `promotions` reference dataset (omniweave import promotions FILE: a sale,
    a price cut or a promotion the retailer ran, with its first and last day): per promotion, the share of each
    period's days it ran on (1 or 0 per day, 0 to 1 per week); a promotion none of whose days fall in the
    fitted periods gives no column. Empty [period, 0] without the dataset."""
    if not runtime.log.has_data("promotions"):
        return np.zeros((len(days), 0))
    rows = runtime.warehouse().table("promotions").to_pyarrow().to_pylist()
    spans: dict[str, list[tuple[date, date]]] = {}
    for r in rows:
        start, end = (
            d if isinstance(d, date) else date.fromisoformat(str(d)) for d in (r["start_date"], r["end_date"])
        )
        spans.setdefault(str(r["promotion"]), []).append((start, end))
    columns = []
    for name in sorted(spans):
        x = np.zeros(len(days))
        for t, first in enumerate(days):
            covered = [first + timedelta(days=k) for k in range(step)]
            x[t] = sum(any(a <= day <= b for a, b in spans[name]) for day in covered) / step
        if x.any():
            columns.append(x)
    return np.stack(columns, axis=1) if columns else np.zeros((len(days), 0))


def media_data(runtime: Runtime, request: MmmRequest) -> tuple[MediaData, date, dict[str, float]]:
    """Revenue and spend per unit and period from the log (see the module docstring); returns the data, its
    first day and the channels left out with their spend."""
    if request.granularity not in GRANULARITIES:
        raise InputError(
            f"got {request.granularity!r}; expected one of {', '.join(GRANULARITIES)}", field="granularity"
        )
    if request.by not in (None, "region"):
        raise InputError(f"got {request.by!r}; expected region (or nothing)", field="by")
    if request.revenue not in REVENUES:
        raise InputError(f"got {request.revenue!r}; expected one of {', '.join(REVENUES)}", field="revenue")
    if not runtime.log.has_data("spend"):
        raise InputError(
            "no spend in the warehouse: import ad spend first (omniweave import ad_spend FILE)", field="spend"
        )
    wh = runtime.warehouse()
    d = wh.dialect
    sp = wh.table("spend")
    spend_rows = (
        sp.select(
            day=d.epoch_day(sp.date.cast("date")),
            channel=sp.channel.lower(),
            campaign=sp.campaign,
            spend=sp.spend.cast("float64"),
        )
        .group_by(["day", "channel", "campaign"])
        .aggregate(spend=lambda t: t.spend.sum())
        .to_pyarrow()
        .to_pylist()
    )
    ev = wh.table("events")
    ev = ev.filter(ev.event == spec.ORDER_COMPLETED)
    ev = d.with_json_fields(ev, "properties", {"_revenue": "revenue", "_total": "total", "_store": "store_id"})
    orders = (
        ev.select(
            day=(d.epoch_seconds(ev.timestamp) // 86400).cast("int64"),
            in_store=ev.channel == "store",
            store=ev._store.fill_null(""),
            value=order_value(ev._revenue, ev._total),
        )
        .group_by(["day", "in_store", "store"])
        .aggregate(revenue=lambda t: t.value.sum())
        .to_pyarrow()
        .to_pylist()
    )
    # the engine's sums of floats and its group order vary from run to run in the last bits; money to the
    # cent, added in a fixed order, makes the same log give the same data, hence the same fit and split
    for r in spend_rows:
        r["spend"] = round(r["spend"], 2) if r["spend"] is not None else None
    for r in orders:
        r["revenue"] = round(r["revenue"], 2) if r["revenue"] is not None else None
    spend_rows.sort(key=lambda r: (r["day"], r["channel"] or "", r["campaign"] or ""))
    orders.sort(key=lambda r: (r["day"], r["in_store"], r["store"]))
    epoch = date(1970, 1, 1)
    first = max(min(r["day"] for r in spend_rows), min((r["day"] for r in orders), default=0))
    last = min(max(r["day"] for r in spend_rows), max((r["day"] for r in orders), default=0))
    if request.since is not None:
        first = max(first, (request.since - epoch).days)
    if request.until is not None:
        last = min(last, (request.until - epoch).days - 1)
    step = GRANULARITIES[request.granularity]
    periods = (last - first + 1) // step
    if periods < 28:
        raise InputError(
            f"got {periods} whole {request.granularity}s with both spend and orders; expected at least 28",
            field="since",
        )
    end = first + periods * step
    city_of: dict[str, str] = {}
    if request.by == "region":
        if not runtime.log.has_data("stores"):
            raise InputError(
                "no stores dataset: import the stores list first (omniweave import stores FILE)", field="by"
            )
        st = wh.table("stores")
        city_of = {
            r["store_id"]: r["city"] or "unknown" for r in st.select("store_id", "city").to_pyarrow().to_pylist()
        }
        units = sorted(set(city_of.values()))
    else:
        units = ["all"]
    revenue = np.zeros((len(units), periods))
    for r in orders:
        if not first <= r["day"] < end:
            continue
        if request.by == "region":
            if not r["in_store"] or r["store"] not in city_of:
                continue
            u = units.index(city_of[r["store"]])
        else:
            if (request.revenue == "store" and not r["in_store"]) or (request.revenue == "online" and r["in_store"]):
                continue
            u = 0
        revenue[u, (r["day"] - first) // step] += r["revenue"] or 0.0
    shares = revenue.sum(axis=1) / max(revenue.sum(), 1e-12)
    spend: dict[str, np.ndarray] = {}
    for r in spend_rows:
        if not first <= r["day"] < end or not r["spend"]:
            continue
        x = spend.setdefault(r["channel"], np.zeros((len(units), periods)))
        t = (r["day"] - first) // step
        city = (r["campaign"] or "").rpartition("@")[2] if "@" in (r["campaign"] or "") else None
        if request.by == "region" and city in units:
            x[units.index(city), t] += r["spend"]
        else:
            x[:, t] += r["spend"] * shares
    total = sum(float(x.sum()) for x in spend.values())
    left_out = {c: float(x.sum()) for c, x in spend.items() if x.sum() < MIN_SHARE * total}
    kept = {c: x for c, x in sorted(spend.items()) if c not in left_out}
    days = [epoch + timedelta(days=first + t * step) for t in range(periods)]
    holidays = (
        _holidays(days)
        if step == 1
        else np.stack([_holidays([day + timedelta(days=k) for k in range(7)]).max(axis=0) for day in days])
    )
    data = MediaData(
        tuple(day.isoformat() for day in days),
        tuple(units),
        revenue,
        kept,
        period_days=step,
        holidays=holidays[:, holidays.any(axis=0)],
        promotions=_promotions(runtime, days, step),
        weekday0=days[0].weekday(),
        dayofyear0=days[0].timetuple().tm_yday - 1,
    )
    return data, days[0], left_out


def lift_tests_from_log(
    runtime: Runtime, data: MediaData, first_day: date
) -> tuple[list[LiftTest], list[dict[str, Any]]]:
    """The `lift_tests` dataset (omniweave import lift_tests FILE) as the fit's lift tests: each test's days
    [start_date, end_date] become the periods that hold them. A test is used only when its channel is in the
    fit and its days lie wholly inside the fitted periods (its measurement covers all of them); every test is
    listed with `used` and, when not, the reason."""
    if not runtime.log.has_data("lift_tests"):
        return [], []
    rows = runtime.warehouse().table("lift_tests").to_pyarrow().to_pylist()
    rows.sort(key=lambda r: (str(r["channel"]).lower(), str(r["start_date"]), str(r["end_date"])))
    step = data.period_days
    periods = len(data.periods)
    used: list[LiftTest] = []
    listed: list[dict[str, Any]] = []
    for r in rows:
        start, end = (
            d if isinstance(d, date) else date.fromisoformat(str(d)) for d in (r["start_date"], r["end_date"])
        )
        channel = str(r["channel"]).lower()
        doc = {
            "test_id": r.get("test_id"),
            "channel": channel,
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
            "incremental_revenue": r["incremental_revenue"],
            "standard_error": r["standard_error"],
        }
        first = (start - first_day).days // step
        last = (end - first_day).days // step  # the period holding the test's last day
        reason = None
        if channel not in data.spend:
            reason = f"no channel {channel!r} in the fit"
        elif end < start:
            reason = "it ends before it starts"
        elif first < 0 or last >= periods:
            reason = "its days are not all inside the fitted periods"
        elif not (r["standard_error"] or 0) > 0:
            reason = f"its standard error is {r['standard_error']}; expected a number above 0"
        if reason is None:
            used.append(LiftTest(channel, first, last + 1, float(r["incremental_revenue"]), float(r["standard_error"])))
        listed.append({**doc, "used": reason is None, "reason": reason or ""})
    return used, listed


@guarded("mmm")
def fit_from_log(runtime: Runtime, request: MmmRequest, *, save: bool = True) -> MmmReport:
    """Fit the model on the log's revenue and spend (calibrated by the log's lift tests) and (by default) save it
    as the `mmm_*` datasets."""
    data, first, left_out = media_data(runtime, request)
    lift_tests, listed = lift_tests_from_log(runtime, data, first) if request.lift_tests else ([], [])
    fit = fit_mmm(
        data,
        delayed=request.delayed,
        holdout=request.holdout,
        bootstrap=request.bootstrap,
        seed=request.seed,
        lift_tests=lift_tests,
    )
    report = MmmReport(request, first, fit, left_out, tuple(listed))
    if save:
        save_report(runtime, report)
    return report


def save_report(runtime: Runtime, report: MmmReport) -> None:
    """Write `mmm_fit` (one row: when, the JSON document), `mmm_channels` and `mmm_series`."""
    document = report.to_dict()
    now = datetime.now(UTC).isoformat()
    write_dataset(runtime.log, "mmm_fit", pa.table({"fitted_at": [now], "document": [json.dumps(document)]}))
    write_dataset(runtime.log, "mmm_channels", pa.Table.from_pylist(report.records()))
    series: dict[str, list[Any]] = {"period": list(report.fit.periods)}
    series.update(document["series"])
    write_dataset(runtime.log, "mmm_series", pa.table(series))


def saved_fit(runtime: Runtime) -> SavedFit | None:
    """The last saved fit, or None."""
    if not runtime.log.has_data("mmm_fit"):
        return None
    rows = runtime.warehouse().table("mmm_fit").to_pyarrow().to_pylist()
    return SavedFit(json.loads(rows[-1]["document"])) if rows else None


# ---------------------------------------------------------------- the chart


def _polyline(values: list[float], x0: float, y0: float, w: float, h: float, top: float) -> str:
    n = max(len(values) - 1, 1)
    return " ".join(f"{x0 + w * i / n:.1f},{y0 + h - h * v / top:.1f}" for i, v in enumerate(values))


COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")


def chart_html(document: dict[str, Any]) -> str:
    """An HTML page with two SVG charts: revenue (actual, baseline, each channel's contribution) over time,
    and each channel's response curve (revenue per period against spend per period, up to 3× current)."""
    series = document["series"]
    channels = [r["channel"] for r in document["channels"]]
    periods = len(document["periods"])
    top = max(max(series["actual"]), max(series["fitted"]), 1.0) * 1.05
    parts = [
        "<!doctype html><meta charset='utf-8'><title>omniweave media-mix model</title>",
        "<style>body{font-family:sans-serif;margin:2em} text{font-size:11px}</style>",
        f"<h1>Media-mix model</h1><p>{html.escape(document['first_day'])}, {periods} periods of "
        f"{document['period_days']} day(s); R² {document['r_squared']:.3f}, MAPE {document['mape']:.1%}</p>",
        "<h2>Revenue and contributions over time</h2><svg width='900' height='340'>",
        f"<polyline fill='none' stroke='#999' points='{_polyline(series['actual'], 40, 10, 840, 300, top)}'/>",
        f"<polyline fill='none' stroke='#000' points='{_polyline(series['baseline'], 40, 10, 840, 300, top)}'/>",
    ]
    legend = ["<text x='45' y='330'>grey: revenue, black: baseline"]
    for i, c in enumerate(channels):
        colour = COLOURS[i % len(COLOURS)]
        parts.append(
            f"<polyline fill='none' stroke='{colour}' points='{_polyline(series[f'contribution_{c}'], 40, 10, 840, 300, top)}'/>"
        )
        legend.append(f"<tspan fill='{colour}'>, {html.escape(c)}</tspan>")
    parts += ["".join(legend) + "</text>", "</svg><h2>Response curves (revenue per period at a steady spend)</h2>"]
    parts.append("<svg width='900' height='340'>")
    current = {r["channel"]: r["spend"] / periods for r in document["channels"]}
    curves = {c: _curve_of(c, d) for c, d in document["curves"].items()}
    grids = {c: np.linspace(0, 3 * max(current[c], 1e-9), 60) for c in channels}
    values = {c: np.asarray(curves[c].revenue(grids[c]), dtype=float) for c in channels}
    top = max([float(v.max()) for v in values.values()] + [1.0]) * 1.05
    for i, c in enumerate(channels):
        colour = COLOURS[i % len(COLOURS)]
        xs = grids[c] / (3 * max(current[c], 1e-9))
        pts = " ".join(f"{40 + 840 * x:.1f},{310 - 300 * v / top:.1f}" for x, v in zip(xs, values[c], strict=True))
        parts.append(f"<polyline fill='none' stroke='{colour}' points='{pts}'/>")
        parts.append(
            f"<text x='{40 + 840 / 3:.0f}' y='{320 + 0 * i}' fill='#666'>current spend</text>" if i == 0 else ""
        )
    parts.append("<line x1='320' y1='10' x2='320' y2='310' stroke='#ccc'/>")
    parts.append("<text x='45' y='334'>x: spend per period as a share of 3× the current (the line: current)</text>")
    parts.append("</svg></html>")
    return "\n".join(parts)


def report_lines(document: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str]]:
    """The report table (header, rows) and the notes under it, from a saved document (fits 80 columns)."""
    header = ["channel", "spend", "contrib.", "ROI [90%]", "mROI", "t½"]
    rows = []
    for r in document["channels"]:
        rows.append(
            [
                r["channel"],
                f"{r['spend']:,.0f}",
                f"{r['contribution']:,.0f}",
                f"{r['roi']:.2f} [{r['roi_low']:.2f}-{r['roi_high']:.2f}]",
                f"{r['marginal_roi']:.2f}",
                f"{r['half_life']:.1f}",
            ]
        )
    notes = [
        f"R² {document['r_squared']:.3f}, MAPE {document['mape']:.1%} in sample"
        + (
            f"; R² {document['r_squared_holdout']:.3f}, MAPE {document['mape_holdout']:.1%} on the last "
            f"{document['holdout_periods']} periods held out"
            if document["r_squared_holdout"] is not None and not math.isnan(document["r_squared_holdout"])
            else ""
        )
    ]
    for r in document["channels"]:
        if r["warnings"]:
            notes.append(f"warning: {r['channel']} may not be identified: {r['warnings']}")
    if document["left_out"]:
        notes.append("left out (under 0.5% of spend): " + ", ".join(sorted(document["left_out"])))
    for test in document.get("lift_tests", []):
        what = f"lift test {test['channel']} {test['start_date']}..{test['end_date']}"
        notes.append(f"{what}: " + ("calibrates the fit" if test["used"] else f"not used: {test['reason']}"))
    return header, rows, notes
