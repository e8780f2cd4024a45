"""What a dashboard page is made of, without any web framework: tables, charts, sparklines, periods. Pure.

A page's builder (shells/web/pages/*.py) calls service functions only — the dashboard adds no numbers of its
own — and returns a `Page`: its template, its context and its `Table`s. Every chart is drawn from one of the
page's tables (`Chart.table`), so its numbers are one click away: the table view under the chart, and the
same table as CSV at the page's own address with `?csv=<table id>` (shells/web/app.py).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from markupsafe import Markup, escape

from omniweave.errors import InputError

PERIODS = ("day", "week", "month")


@dataclass(frozen=True)
class Table:
    """Rows of plain values (numbers, text, None) under named columns."""

    id: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow(["" if v is None else v for v in row])
        return out.getvalue()

    def column(self, name: str) -> list[Any]:
        at = self.columns.index(name)
        return [row[at] for row in self.rows]


@dataclass(frozen=True)
class Chart:
    """An ECharts option drawn from `table`; `description` is what a screen reader says about it (ECharts' aria
    description is generated from the data as well)."""

    table: Table
    option: dict[str, Any]
    description: str
    height: int = 300

    @property
    def id(self) -> str:
        return self.table.id


@dataclass
class Page:
    """A rendered page's parts: the template, what it shows, and every table it shows (for `?csv=`)."""

    template: str
    title: str
    context: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)

    def add(self, item: Table | Chart) -> Table | Chart:
        table = item.table if isinstance(item, Chart) else item
        if table.id in self.tables:
            raise ValueError(f"two tables named {table.id!r} on one page")
        self.tables[table.id] = table
        return item


def line_chart(table: Table, x: str, series: Sequence[str], description: str, *, y_name: str = "") -> Chart:
    """One line per column of `series` over the column `x`."""
    return Chart(
        table,
        {
            "tooltip": {"trigger": "axis"},
            "legend": {"top": 0},
            "grid": {"left": 56, "right": 16, "top": 36, "bottom": 32},
            "xAxis": {"type": "category", "data": table.column(x)},
            "yAxis": {"type": "value", "name": y_name},
            "series": [{"name": s, "type": "line", "data": table.column(s), "showSymbol": False} for s in series],
        },
        description,
    )


def bar_chart(
    table: Table, x: str, series: Sequence[str], description: str, *, stacked: bool = False, horizontal: bool = False
) -> Chart:
    """Bars of the columns `series` per value of `x` (stacked, or side by side)."""
    category = {"type": "category", "data": table.column(x)}
    value = {"type": "value"}
    return Chart(
        table,
        {
            "tooltip": {"trigger": "axis", "axisPointer": {"type": "shadow"}},
            "legend": {"top": 0},
            "grid": {"left": 96 if horizontal else 56, "right": 16, "top": 36, "bottom": 32},
            "xAxis": value if horizontal else category,
            "yAxis": category if horizontal else value,
            "series": [
                {"name": s, "type": "bar", "data": table.column(s), **({"stack": "all"} if stacked else {})}
                for s in series
            ],
        },
        description,
        height=max(300, 28 * len(table.rows) + 80) if horizontal else 300,
    )


def sparkline(values: Sequence[float | None], *, width: int = 96, height: int = 24, label: str = "") -> Markup:
    """An inline SVG line of `values` (None is a gap), with `label` as its accessible name."""
    points = [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    title = escape(label)
    if len(points) < 2:
        return Markup(f'<svg class="spark" width="{width}" height="{height}" role="img" aria-label="{title}"></svg>')
    low = min(v for _, v in points)
    high = max(v for _, v in points)
    span = (high - low) or 1.0
    step = (width - 4) / max(1, len(values) - 1)
    coords = " ".join(f"{2 + i * step:.1f},{height - 2 - (v - low) / span * (height - 4):.1f}" for i, v in points)
    last_x, last_y = coords.rsplit(" ", 1)[-1].split(",")
    return Markup(
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{title}"><polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{coords}"/>'
        f'<circle cx="{last_x}" cy="{last_y}" r="2" fill="currentColor"/></svg>'
    )


def change(current: float | None, previous: float | None) -> float | None:
    """The relative change from `previous` to `current` (None when either is missing or previous is 0)."""
    if current is None or previous is None or previous == 0:
        return None
    return (current - previous) / abs(previous)


def number(value: Any, unit: str = "") -> str:
    """A figure as a person reads it: thousands separated, at most four significant digits below 1,000."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if unit in ("count", "persons", "orders") or (isinstance(value, int) and unit != "%") or abs(value) >= 1000:
        text = f"{value:,.0f}"
    else:
        text = f"{value:,.4g}" if abs(value) < 100 else f"{value:,.1f}"
    if unit == "%":
        return text + " %"
    return text


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.1f} %"


def parse_period(period: str | None) -> str:
    period = period or "month"
    if period not in PERIODS:
        raise InputError(f"period must be one of {', '.join(PERIODS)}, got {period!r}", field="period")
    return period


def parse_day(text: str | None, name: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InputError(f"{name} must be a day as YYYY-MM-DD, got {text!r}", field=name) from None


def period_start(day: date, period: str) -> date:
    """The first day of the period (ISO week from Monday) that holds `day`."""
    if period == "month":
        return day.replace(day=1)
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day
