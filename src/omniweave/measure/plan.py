"""The campaign plan: goals with KPI targets, personas, channels and a budget, and how far each target is on track.

The domain articles' method starts with a one-page plan (seeds 004, 002): three to five marketing goals, each
measured by three to five KPIs online and in store, the target personas, two or three channels to focus on,
and a budget; and it ends with tracking the plan against the live figures. Pure: the plan as a frozen tree,
checked with every problem at once (each with its path, e.g. `goals[1].kpis[0].target: expected a number`),
written back as TOML, and tracked against KPI values given to it (measure/service/plan.py reads the file and
the KPI report).

plan.toml (in the home folder):

    name = "Autumn: bring online visitors into the stores"
    period = "month"                 # the period a target is a value of, unless a KPI says otherwise
    personas = ["Not buying yet"]    # names (or ids) of personas: `omniweave personas suggest`, persona segments
    channels = ["email", "store"]    # 2 to 3 of events.spec.CHANNELS

    [budget]
    total = 25000
    currency = "EUR"                 # optional

    [[goals]]
    name = "More people in the stores"

    [[goals.kpis]]
    kpi = "store_visitors"           # a name of the KPI catalogue (measure/service/kpis.py CATALOGUE)
    target = 400
    by = 2026-11-30                  # the target is the KPI's value in the period holding this day
    # period = "week"                # optional: day, week or month
    # direction = "down"             # optional: "up" (at least the target) or "down" (at most the target)

**A target** is the KPI's value for one period: `revenue_total` 60,000 by 2026-11-30 with period month means
November's revenue is at least 60,000. Lower is better by default for the costs (LOWER_IS_BETTER).

**Tracking** (`track`) uses only whole periods (measure/kpis.py: ended and active on every day), so a month the
data starts or ends inside does not pull a trend down:

- the target's period is whole in the data: the target is *met* or *missed* by its value;
- otherwise the *projection* is the least-squares line through the last TREND_PERIODS whole periods before the
  target's period (x = the period's number, so a gap in the data stays a gap), evaluated at the target's
  period; one whole period gives a flat line (its value). The KPI is *on track* when the projection reaches
  the target (at least it going up, at most it going down), else *behind*; without any whole period before
  the target's, it has *no data*.
"""

from __future__ import annotations

import contextlib
import math
import re
import tomllib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from omniweave.errors import InputError

PERIODS = ("day", "week", "month")
DIRECTIONS = ("up", "down")
GOALS = (3, 5)
KPIS_PER_GOAL = (3, 5)
CHANNELS = (2, 3)
PERSONAS = (1, 10)
LOWER_IS_BETTER = frozenset({"customer_acquisition_cost", "cost_of_sales", "marketing_spend"})
"""KPIs whose target is a ceiling unless the plan says `direction = "up"`."""
TREND_PERIODS = 6
"""Whole periods the linear trend is fitted to (the latest ones before the target's period)."""
STATUSES = ("met", "missed", "on track", "behind", "no data")
PLAN_KEYS = ("name", "period", "personas", "channels", "budget", "goals")
GOAL_KEYS = ("name", "kpis")
KPI_KEYS = ("kpi", "target", "by", "period", "direction")
BUDGET_KEYS = ("total", "currency")
_EPOCH = date(1970, 1, 1)
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class PlanError(InputError):
    """A plan with problems: `problems` lists each as (path, message), the path in the plan's own terms
    (`goals[1].kpis[0].target`, `channels`, `budget.total`)."""

    def __init__(self, problems: Sequence[tuple[str, str]], source: str = "the plan"):
        self.problems = list(problems)
        lines = "\n".join(f"  {path or '(top)'}: {message}" for path, message in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s):\n{lines}", field=self.problems[0][0] or None)


@dataclass(frozen=True)
class KpiTarget:
    """One KPI of a goal: the value it should reach, by when, per which period, and which way is better."""

    kpi: str
    target: float
    by: date
    period: str | None = None  # None: the plan's
    direction: str | None = None  # None: down for LOWER_IS_BETTER, else up

    def period_of(self, plan: Plan) -> str:
        return self.period or plan.period

    @property
    def way(self) -> str:
        """The direction that counts: the one given, else the KPI's default."""
        return self.direction or ("down" if self.kpi in LOWER_IS_BETTER else "up")

    def reached(self, value: float) -> bool:
        """Whether `value` reaches the target in this KPI's direction."""
        return value >= self.target if self.way == "up" else value <= self.target


@dataclass(frozen=True)
class Goal:
    name: str
    kpis: tuple[KpiTarget, ...]


@dataclass(frozen=True)
class Budget:
    total: float
    currency: str = ""


@dataclass(frozen=True)
class Plan:
    """A campaign plan, checked (`parse_plan`)."""

    name: str
    period: str
    personas: tuple[str, ...]
    channels: tuple[str, ...]
    budget: Budget
    goals: tuple[Goal, ...]


# --- reading --------------------------------------------------------------------------------------------------


def _text(value: Any, path: str, problems: list[tuple[str, str]], *, limit: int = 200) -> str:
    if not isinstance(value, str) or not value.strip():
        problems.append((path, f"expected a non-empty text; got {value!r}"))
        return ""
    if len(value) > limit:
        problems.append((path, f"expected at most {limit} characters; got {len(value)}"))
    return value.strip()


def _number(value: Any, path: str, problems: list[tuple[str, str]]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        problems.append((path, f"expected a number; got {value!r}"))
        return math.nan
    return float(value)


def _day(value: Any, path: str, problems: list[tuple[str, str]]) -> date:
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # a text that is no day is named below
            value = date.fromisoformat(value.strip())
    if not isinstance(value, date) or not 2000 <= value.year <= 2100:
        problems.append((path, f"expected a day as YYYY-MM-DD (2000 to 2100); got {value!r}"))
        return _EPOCH
    return value


def _choice(value: Any, path: str, allowed: Sequence[str], problems: list[tuple[str, str]]) -> str:
    if value not in allowed:
        problems.append((path, f"expected one of {', '.join(allowed)}; got {value!r}"))
        return allowed[0]
    return str(value)


def _unknown_keys(raw: Mapping[str, Any], allowed: Sequence[str], path: str, problems: list[tuple[str, str]]) -> None:
    for key in raw:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            problems.append((where, f"unknown field; allowed: {', '.join(allowed)}"))


def _names(
    raw: Any,
    path: str,
    bounds: tuple[int, int],
    what: str,
    known: Collection[str] | None,
    problems: list[tuple[str, str]],
) -> tuple[str, ...]:
    """A list of distinct names, `bounds` long, each in `known` (when given)."""
    if not isinstance(raw, list):
        problems.append((path, f"expected a list of {bounds[0]} to {bounds[1]} {what}; got {raw!r}"))
        return ()
    if not bounds[0] <= len(raw) <= bounds[1]:
        problems.append((path, f"expected {bounds[0]} to {bounds[1]} {what}; got {len(raw)}"))
    out: list[str] = []
    for i, item in enumerate(raw):
        name = _text(item, f"{path}[{i}]", problems)
        if not name:
            continue
        if name in out:
            problems.append((f"{path}[{i}]", f"{name!r} is listed twice"))
        elif known is not None and name not in known:
            listed = ", ".join(sorted(known)) or "none yet"
            problems.append((f"{path}[{i}]", f"unknown {what[:-1]} {name!r}; expected one of: {listed}"))
        out.append(name)
    return tuple(out)


def _kpi(raw: Any, path: str, catalogue: Collection[str], problems: list[tuple[str, str]]) -> KpiTarget:
    if not isinstance(raw, Mapping):
        problems.append((path, f"expected a table with {', '.join(KPI_KEYS)}; got {raw!r}"))
        return KpiTarget("", math.nan, _EPOCH)
    _unknown_keys(raw, KPI_KEYS, path, problems)
    name = raw.get("kpi")
    if name is None:
        problems.append((f"{path}.kpi", "missing: a KPI of the catalogue (omniweave kpis)"))
        name = ""
    elif name not in catalogue:
        problems.append((f"{path}.kpi", f"unknown KPI {name!r}; expected one of {', '.join(sorted(catalogue))}"))
    for key in ("target", "by"):
        if key not in raw:
            problems.append((f"{path}.{key}", "missing"))
    target = _number(raw["target"], f"{path}.target", problems) if "target" in raw else math.nan
    by = _day(raw["by"], f"{path}.by", problems) if "by" in raw else _EPOCH
    period = _choice(raw["period"], f"{path}.period", PERIODS, problems) if raw.get("period") is not None else None
    way = raw.get("direction")
    direction = _choice(way, f"{path}.direction", DIRECTIONS, problems) if way is not None else None
    return KpiTarget(str(name), target, by, period, direction)


def _goal(raw: Any, path: str, catalogue: Collection[str], problems: list[tuple[str, str]]) -> Goal:
    if not isinstance(raw, Mapping):
        problems.append((path, f"expected a table with a name and kpis; got {raw!r}"))
        return Goal("", ())
    _unknown_keys(raw, GOAL_KEYS, path, problems)
    name = _text(raw.get("name"), f"{path}.name", problems)
    kpis = raw.get("kpis")
    if not isinstance(kpis, list):
        problems.append((f"{path}.kpis", f"expected a list of {KPIS_PER_GOAL[0]} to {KPIS_PER_GOAL[1]} KPIs"))
        return Goal(name, ())
    if not KPIS_PER_GOAL[0] <= len(kpis) <= KPIS_PER_GOAL[1]:
        problems.append((f"{path}.kpis", f"expected {KPIS_PER_GOAL[0]} to {KPIS_PER_GOAL[1]} KPIs; got {len(kpis)}"))
    out = tuple(_kpi(k, f"{path}.kpis[{j}]", catalogue, problems) for j, k in enumerate(kpis))
    seen: set[str] = set()
    for j, k in enumerate(out):
        if k.kpi and k.kpi in seen:
            problems.append((f"{path}.kpis[{j}].kpi", f"{k.kpi!r} is already a KPI of this goal"))
        seen.add(k.kpi)
    return Goal(name, out)


def _budget(raw: Any, problems: list[tuple[str, str]]) -> Budget:
    if not isinstance(raw, Mapping):
        problems.append(("budget", f"expected a table with total (and currency); got {raw!r}"))
        return Budget(math.nan)
    _unknown_keys(raw, BUDGET_KEYS, "budget", problems)
    if "total" not in raw:
        problems.append(("budget.total", "missing: the campaign's budget, a number"))
        total = math.nan
    else:
        total = _number(raw["total"], "budget.total", problems)
        if total <= 0:
            problems.append(("budget.total", f"expected a number above 0; got {raw['total']!r}"))
    currency = raw.get("currency") or ""
    if currency and (not isinstance(currency, str) or not _CURRENCY.match(currency)):
        problems.append(("budget.currency", f"expected a three-letter code such as EUR; got {currency!r}"))
    return Budget(total, str(currency))


def parse_plan(
    document: Any,
    *,
    catalogue: Collection[str],
    channels: Collection[str],
    personas: Collection[str] | None = None,
    source: str = "the plan",
) -> Plan:
    """`document` (a mapping: from plan.toml, a form or an API body) as a Plan, or PlanError listing every
    problem. `catalogue`: the KPI names; `channels`: the channels one may choose; `personas`: the known
    persona names and ids (None: not checked, e.g. reading a file whose personas were renamed since)."""
    problems: list[tuple[str, str]] = []
    if not isinstance(document, Mapping):
        raise PlanError([("", f"expected a table of {', '.join(PLAN_KEYS)}; got {type(document).__name__}")], source)
    _unknown_keys(document, PLAN_KEYS, "", problems)
    name = _text(document.get("name"), "name", problems)
    period = _choice(document.get("period", "month"), "period", PERIODS, problems)
    chosen_personas = _names(document.get("personas"), "personas", PERSONAS, "personas", personas, problems)
    chosen_channels = _names(document.get("channels"), "channels", CHANNELS, "channels", channels, problems)
    budget = _budget(document.get("budget"), problems)
    raw_goals = document.get("goals")
    goals: tuple[Goal, ...] = ()
    if not isinstance(raw_goals, list):
        problems.append(("goals", f"expected a list of {GOALS[0]} to {GOALS[1]} goals"))
    else:
        if not GOALS[0] <= len(raw_goals) <= GOALS[1]:
            problems.append(("goals", f"expected {GOALS[0]} to {GOALS[1]} goals; got {len(raw_goals)}"))
        goals = tuple(_goal(g, f"goals[{i}]", catalogue, problems) for i, g in enumerate(raw_goals))
    if problems:
        raise PlanError(problems, source)
    return Plan(name, period, chosen_personas, chosen_channels, budget, goals)


def read_toml(text: str, source: str = "plan.toml") -> dict[str, Any]:
    """The TOML document `text` (PlanError naming the line of a syntax error)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError([("", f"not valid TOML: {exc}")], source) from None


# --- writing --------------------------------------------------------------------------------------------------


def plan_document(plan: Plan) -> dict[str, Any]:
    """The plan as a plain mapping (days as `date`): `parse_plan` of it gives the same plan."""

    def kpi(k: KpiTarget) -> dict[str, Any]:
        out: dict[str, Any] = {"kpi": k.kpi, "target": k.target, "by": k.by}
        if k.period:
            out["period"] = k.period
        if k.direction:
            out["direction"] = k.direction
        return out

    budget: dict[str, Any] = {"total": plan.budget.total}
    if plan.budget.currency:
        budget["currency"] = plan.budget.currency
    return {
        "name": plan.name,
        "period": plan.period,
        "personas": list(plan.personas),
        "channels": list(plan.channels),
        "budget": budget,
        "goals": [{"name": g.name, "kpis": [kpi(k) for k in g.kpis]} for g in plan.goals],
    }


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML spelling for {value!r}")


def _toml_string(text: str) -> str:
    """A TOML basic string (its escapes are a subset of JSON's, but for the control characters below)."""
    escapes = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}
    out = []
    for ch in text:
        if ch in escapes:
            out.append(escapes[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def plan_toml(plan: Plan) -> str:
    """The plan as the text of plan.toml."""
    doc = plan_document(plan)
    lines = ["# The campaign plan (omniweave: the Plan page, or edit this file).", ""]
    for key in ("name", "period", "personas", "channels"):
        lines.append(f"{key} = {_toml_value(doc[key])}")
    lines += ["", "[budget]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in doc["budget"].items()]
    for goal in doc["goals"]:
        lines += ["", "[[goals]]", f"name = {_toml_value(goal['name'])}"]
        for kpi in goal["kpis"]:
            lines += ["", "[[goals.kpis]]"]
            lines += [f"{key} = {_toml_value(value)}" for key, value in kpi.items()]
    return "\n".join(lines) + "\n"


# --- tracking -------------------------------------------------------------------------------------------------


def period_index(day: date, period: str) -> int:
    """The number of the period holding `day`, as measure/kpis.py numbers them (its `period_start` inverts it)."""
    if period == "day":
        return (day - _EPOCH).days
    if period == "week":
        return ((day - _EPOCH).days + 3) // 7  # weeks from the Monday before 1970-01-01
    return day.year * 12 + day.month - 1


def period_first_day(day: date, period: str) -> date:
    """The first day of the period holding `day`."""
    if period == "month":
        return day.replace(day=1)
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day


@dataclass(frozen=True)
class Point:
    """A KPI's value for one period (its first day); `partial` as the KPI report says."""

    start: date
    value: float
    partial: bool = False


def linear_trend(points: Sequence[tuple[int, float]], at: int) -> tuple[float, float]:
    """The least-squares line through `points` (x, y) evaluated at `at`, and its slope per period; one point
    gives a flat line. Closed form: slope = sum((x - mean x)(y - mean y)) / sum((x - mean x)^2)."""
    if not points:
        raise ValueError("a trend needs at least one point")
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0
    return mean_y + slope * (at - mean_x), slope


@dataclass(frozen=True)
class KpiStatus:
    """Where one KPI target stands: its latest whole value, the projection to the target's period, the status."""

    goal: int
    goal_name: str
    kpi: str
    period: str
    direction: str
    target: float
    by: date
    target_period: date
    status: str  # one of STATUSES
    current: float | None  # the latest whole period's value before (or of) the target's period
    current_period: date | None
    projection: float | None  # the value at the target's period: the trend's, or the actual one (met, missed)
    slope: float | None  # the trend's change per period (None: met, missed, no data)
    basis: tuple[Point, ...]  # the whole periods the status rests on

    @property
    def gap(self) -> float | None:
        """Projection minus target (positive: above the target)."""
        return None if self.projection is None else self.projection - self.target

    @property
    def projected_share(self) -> float | None:
        """The projection as a share of the target (None for a target of 0)."""
        return None if self.projection is None or self.target == 0 else self.projection / self.target

    @property
    def on_target(self) -> bool:
        return self.status in ("met", "on track")


def track_kpi(
    plan: Plan, goal_index: int, target: KpiTarget, series: Sequence[Point], trend_periods: int = TREND_PERIODS
) -> KpiStatus:
    """The status of one KPI target from its `series` of values per period (any order; see the module doc)."""
    period = target.period_of(plan)
    target_start = period_first_day(target.by, period)
    at = period_index(target_start, period)
    whole = sorted((p for p in series if not p.partial and math.isfinite(p.value)), key=lambda p: p.start)
    base = KpiStatus(
        goal=goal_index,
        goal_name=plan.goals[goal_index].name,
        kpi=target.kpi,
        period=period,
        direction=target.way,
        target=target.target,
        by=target.by,
        target_period=target_start,
        status="no data",
        current=None,
        current_period=None,
        projection=None,
        slope=None,
        basis=(),
    )
    final = next((p for p in whole if p.start == target_start), None)
    if final is not None:
        return replace(
            base,
            status="met" if target.reached(final.value) else "missed",
            current=final.value,
            current_period=final.start,
            projection=final.value,
            basis=(final,),
        )
    before = [p for p in whole if p.start < target_start][-trend_periods:]
    if not before:
        return base
    projection, slope = linear_trend([(period_index(p.start, period), p.value) for p in before], at)
    return replace(
        base,
        status="on track" if target.reached(projection) else "behind",
        current=before[-1].value,
        current_period=before[-1].start,
        projection=projection,
        slope=slope,
        basis=tuple(before),
    )


def track(
    plan: Plan, series: Mapping[tuple[str, str], Sequence[Point]], trend_periods: int = TREND_PERIODS
) -> tuple[KpiStatus, ...]:
    """Every KPI target of the plan, goal by goal; `series[(kpi, period)]` are the KPI's values per period
    (a KPI without values has no data)."""
    return tuple(
        track_kpi(plan, i, k, series.get((k.kpi, k.period_of(plan)), ()), trend_periods)
        for i, goal in enumerate(plan.goals)
        for k in goal.kpis
    )


def needed_periods(plan: Plan) -> tuple[str, ...]:
    """The periods the plan's targets are values of (the KPI reports tracking needs)."""
    return tuple(p for p in PERIODS if any(k.period_of(plan) == p for g in plan.goals for k in g.kpis))
