"""Plan: the campaign plan (`<home>/plan.toml`) shown, tracked against the live KPIs, edited and exported.

    GET  /app/plan                 the plan, each KPI target on track or behind with its projection, and the editor
    POST /app/plan/save            a form (or the TOML text) → plan.toml, for roles with config:manage
    GET  /app/plan/export.html     the plan on one printable page
    GET  /app/plan/export.pdf      the same as a one-page PDF (reportlab)

The plan model, its checks and the tracking (a linear trend of the KPI's whole periods to the target's period)
are measure/plan.py's; the file and the KPI report are measure/service/plan.py's. The page adds no number: the
KPI values are `kpi_report`'s (as `omniweave kpis --period <p>`), shared with the Overview's cache.
Owners and marketers (config:manage) edit, with the form or the file's text (kept as written, comments and all);
everyone else who may open the page sees it read-only. A save that fails its checks answers 400 with the form as
typed and every problem next to its field, one started before someone else saved answers 409; neither writes.
"""

from __future__ import annotations

import io
import math
import re
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from omniweave.errors import InputError
from omniweave.measure import plan as model
from omniweave.measure.service import plan as plans
from omniweave.measure.service.kpis import CATALOGUE
from omniweave.measure.service.reports import KpiReport, KpiRequest, kpi_report
from omniweave.privacy import roles, sessions
from omniweave.privacy.roles import Principal
from omniweave.runtime import Runtime
from omniweave.shells.api.deps import RuntimeDep
from omniweave.shells.web import view
from omniweave.shells.web.app import ENV, Context, page, render, router, viewer

GOAL_SLOTS = model.GOALS[1]
KPI_SLOTS = model.KPIS_PER_GOAL[1]
FORM_LIMIT_BYTES = 65_536
FORM_FIELDS = 400
STATUS_CLASS = {s: "status-" + s.replace(" ", "-") for s in model.STATUSES}


# --- the numbers, through the service layer ---------------------------------------------------------------------


def _report(ctx: Context, period: str) -> KpiReport:
    """The KPI report of `period`, cached under the Overview's key (the same request)."""
    return ctx.cached(("kpis", period), lambda: kpi_report(ctx.runtime, KpiRequest(period=period)))


def _personas(ctx: Context) -> tuple[tuple[str, str], ...]:
    return ctx.cached(("plan-personas",), lambda: plans.known_personas(ctx.runtime))


# --- the form ---------------------------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    """A document value as an input shows it."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _typed(text: str) -> Any:
    """A number as typed into the form: a float when it reads as one, else the text (the check names it)."""
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def form_document(fields: dict[str, list[str]]) -> dict[str, Any]:
    """The plan document a submitted form describes. Rows left blank are dropped (so the goals and KPIs are
    numbered as the re-rendered form shows them); everything typed is kept, even when it is wrong."""

    def one(name: str) -> str:
        return (fields.get(name) or [""])[-1].strip()

    budget: dict[str, Any] = {}
    if one("budget.total"):
        budget["total"] = _typed(one("budget.total"))
    if one("budget.currency"):
        budget["currency"] = one("budget.currency")
    goals = []
    for i in range(GOAL_SLOTS):
        kpis = []
        for j in range(KPI_SLOTS):
            at = f"goals[{i}].kpis[{j}]"
            row = {key: one(f"{at}.{key}") for key in model.KPI_KEYS}
            if not (row["kpi"] or row["target"] or row["by"]):
                continue
            kpi: dict[str, Any] = {key: value for key, value in row.items() if value}
            if "target" in kpi:
                kpi["target"] = _typed(kpi["target"])
            kpis.append(kpi)
        name = one(f"goals[{i}].name")
        if name or kpis:
            goals.append({"name": name, "kpis": kpis})
    return {
        "name": one("name"),
        "period": one("period") or "month",
        "personas": [v.strip() for v in fields.get("personas", []) if v.strip()],
        "channels": [v.strip() for v in fields.get("channels", []) if v.strip()],
        "budget": budget,
        "goals": goals,
    }


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _mapped(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _last(fields: dict[str, list[str]], name: str) -> str | None:
    """The last value the form sent for `name` (None: not sent)."""
    values = fields.get(name)
    return values[-1] if values else None


def form_slots(document: dict[str, Any] | None) -> dict[str, Any]:
    """What the form's inputs show for `document` (a checked plan's or one as typed): texts, in fixed slots."""
    doc = document or {}
    raw_goals = _listed(doc.get("goals"))
    goals = []
    for i in range(max(GOAL_SLOTS, len(raw_goals))):
        goal = _mapped(raw_goals[i] if i < len(raw_goals) else None)
        raw_kpis = _listed(goal.get("kpis"))
        kpis = []
        for j in range(max(KPI_SLOTS, len(raw_kpis))):
            kpi = _mapped(raw_kpis[j] if j < len(raw_kpis) else None)
            kpis.append({key: _shown(kpi.get(key)) for key in model.KPI_KEYS})
        goals.append({"name": _shown(goal.get("name")), "kpis": kpis})
    budget = _mapped(doc.get("budget"))
    listed = {key: [_shown(v) for v in _listed(doc.get(key))] for key in ("personas", "channels")}
    return {
        "name": _shown(doc.get("name")),
        "period": _shown(doc.get("period")) or "month",
        "personas": listed["personas"],
        "channels": listed["channels"],
        "budget_total": _shown(budget.get("total")),
        "budget_currency": _shown(budget.get("currency")),
        "goals": goals,
    }


def field_id(path: str) -> str:
    """The HTML id of the input (or the group of inputs) for a plan path: `goals[1].kpis[0].target` →
    `f-goals-1-kpis-0-target`; `personas[2]` → `f-personas` (the group of checkboxes)."""
    if re.fullmatch(r"(personas|channels)\[\d+\]", path):
        path = path.split("[", 1)[0]
    return "f-" + "".join(c if c.isalnum() or c == "_" else "-" for c in path).replace("--", "-").strip("-")


async def _read_form(request: Request) -> dict[str, list[str]]:
    body = await request.body()
    if len(body) > FORM_LIMIT_BYTES:
        raise InputError(f"the form is larger than {FORM_LIMIT_BYTES // 1024} KB", field="body")
    try:
        return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=FORM_FIELDS)
    except ValueError:
        raise InputError(f"the form has more than {FORM_FIELDS} fields", field="body") from None


# --- the page ---------------------------------------------------------------------------------------------------


def _tracking_tables(tracking: plans.PlanTracking) -> tuple[view.Table, view.Chart]:
    records = tracking.records()
    columns = tuple(records[0]) if records else ()
    table = view.Table(
        "tracking", "Every KPI target: current, projection, status", columns, tuple(tuple(r.values()) for r in records)
    )
    progress = view.Table(
        "progress",
        "Projected value as a share of the target",
        ("target", "projected % of target", "status"),
        tuple(
            (
                f"{k.goal + 1}. {k.kpi}",
                None if k.projected_share is None else round(k.projected_share * 100, 1),
                k.status,
            )
            for k in tracking.kpis
        ),
    )
    chart = view.bar_chart(
        progress,
        "target",
        ["projected % of target"],
        "Each KPI target's projected value as a percentage of the target (100 reaches it; for a ceiling, "
        "at most 100 does), goal number first",
        horizontal=True,
    )
    return table, chart


def build(
    ctx: Context,
    *,
    typed: dict[str, Any] | None = None,
    problems: tuple[tuple[str, str], ...] = (),
    typed_toml: str | None = None,
    version: str | None = None,
    notice: str | None = None,
) -> view.Page:
    """The Plan page; after a refused save, `typed` (the form as typed) or `typed_toml`, the `problems`, and the
    `version` of the file the editor started from (kept: a save over someone else's still conflicts)."""
    can_edit = ctx.principal.allows(roles.CONFIG_MANAGE)
    # the personas (a clustering of the profiles, cached until the data changes) only for those who edit
    known = _personas(ctx) if can_edit else ()
    accepted = plans.persona_names(known) if can_edit else None
    found = plans.read_plan(ctx.runtime, accepted)
    out = view.Page("dashboard/plan.html", "Plan")
    tracking = None
    if found.plan is not None:
        tracking = plans.track_plan(ctx.runtime, found.plan, lambda period: _report(ctx, period))
        table, chart = _tracking_tables(tracking)
        out.add(table)
        out.add(chart)
        out.context["progress_chart"] = chart
    groups: dict[str, list[str]] = {}
    for kpi in CATALOGUE:
        groups.setdefault(kpi.group, []).append(kpi.name)
    form_problems = problems if typed is not None else ()
    shown = typed if typed is not None else (found.document if found.plan is None else model.plan_document(found.plan))
    out.context.update(
        file=found,
        tracking=tracking,
        can_edit=can_edit,
        form=form_slots(shown),
        errors=_errors_by_field(form_problems),
        problems=problems,
        toml_text=typed_toml if typed_toml is not None else (found.text or ""),
        toml_open=typed_toml is not None,
        form_version=found.version if version is None else version,
        notice=notice or ("The plan is saved." if ctx.get("saved") else None),
        field_id=field_id,
        kpi_groups=groups,
        personas=known,
        persona_known=accepted or frozenset(),
        kpi_names=frozenset(k.name for k in CATALOGUE),
        channels=plans.CHOOSABLE_CHANNELS,
        periods=model.PERIODS,
        directions=model.DIRECTIONS,
        status_class=STATUS_CLASS,
        trend_periods=model.TREND_PERIODS,
        limits={"goals": model.GOALS, "kpis": model.KPIS_PER_GOAL, "channels": model.CHANNELS},
        spark=_spark,
    )
    return out


def _errors_by_field(problems: tuple[tuple[str, str], ...]) -> dict[str, list[str]]:
    """The problems per input (its HTML id): what the form shows next to each field."""
    out: dict[str, list[str]] = {}
    for path, message in problems:
        out.setdefault(field_id(path), []).append(message)
    return out


def _spark(status: model.KpiStatus) -> Any:
    values: list[float | None] = [p.value for p in status.basis]
    if status.slope is not None and status.projection is not None:
        values.append(status.projection)
    return view.sparkline(values, label=f"{status.kpi}: the whole periods used and the projection")


@page("plan", "Plan")
def plan_page(ctx: Context) -> view.Page:
    return build(ctx)


# --- saving -----------------------------------------------------------------------------------------------------


def _refused(request: Request, principal: Principal | None, status: int, title: str, message: str) -> HTMLResponse:
    return render("dashboard/error.html", request, principal, status=status, title=title, message=message)


@router.post("/app/plan/save", response_class=HTMLResponse)
async def save(runtime: RuntimeDep, request: Request) -> Response:
    """The form (or the TOML text) read here; the rest (the stores, the KPI report) in a worker thread."""
    try:
        fields: dict[str, list[str]] | InputError = await _read_form(request)
    except InputError as exc:
        fields = exc
    return await run_in_threadpool(_save, runtime, request, fields)


def _save(runtime: Runtime, request: Request, fields: dict[str, list[str]] | InputError) -> Response:
    principal = viewer(runtime, request)
    if principal is None:
        return RedirectResponse("/app/login?next=%2Fapp%2Fplan", status_code=303)
    if not principal.allows(roles.CONFIG_MANAGE):
        return _refused(
            request,
            principal,
            403,
            "Not for your role",
            f"Changing the plan needs the scope {roles.CONFIG_MANAGE!r}; your role is {principal.role}.",
        )
    if isinstance(fields, InputError):
        return _refused(request, principal, 400, "Plan: bad request", str(fields))
    token = request.cookies.get(sessions.COOKIE_NAME) or ""
    if not sessions.csrf_ok(token, _last(fields, "csrf")):
        return _refused(
            request, principal, 403, "Not saved", "The form's CSRF token is missing or wrong; reload the page."
        )
    ctx = Context(runtime, principal, request.query_params)
    version = _last(fields, "version")  # the file's version the page was opened on (the form always sends it)
    text = _last(fields, "toml")
    new: dict[str, Any] | str = text if text is not None else form_document(fields)
    try:
        plans.save_plan(runtime, new, personas=plans.persona_names(_personas(ctx)), expected_version=version)
    except (model.PlanError, plans.PlanConflict) as exc:
        problems = tuple(exc.problems) if isinstance(exc, model.PlanError) else (("", exc.reason),)
        status = 409 if isinstance(exc, plans.PlanConflict) else 400
        if isinstance(new, str):
            built = build(ctx, typed_toml=new, problems=problems, version=version)
        else:
            built = build(ctx, typed=new, problems=problems, version=version)
        return render(
            built.template,
            request,
            principal,
            status=status,
            page=built,
            current="plan",
            title=built.title,
            **built.context,
        )
    return RedirectResponse("/app/plan?saved=1", status_code=303)


# --- exports ----------------------------------------------------------------------------------------------------


def _exported(runtime: Runtime, request: Request) -> tuple[Principal, plans.PlanTracking] | Response:
    """The signed-in principal and the tracked plan, or the answer that says why not."""
    principal = viewer(runtime, request)
    if principal is None:
        return RedirectResponse("/app/login?next=%2Fapp%2Fplan", status_code=303)
    if not principal.allows(roles.PROFILES_READ):
        return _refused(request, principal, 403, "Not for your role", f"The plan needs {roles.PROFILES_READ!r}.")
    found = plans.read_plan(runtime)
    if found.text is None:
        return _refused(
            request, principal, 404, "No plan yet", "There is no plan to export: save one on the Plan page."
        )
    if found.plan is None:
        listed = "; ".join(f"{p or '(top)'}: {m}" for p, m in found.problems)
        return _refused(request, principal, 409, "The plan has problems", f"plan.toml cannot be exported: {listed}")
    ctx = Context(runtime, principal, request.query_params)
    return principal, plans.track_plan(runtime, found.plan, lambda period: _report(ctx, period))


def _export_context(tracking: plans.PlanTracking) -> dict[str, Any]:
    return {
        "plan": tracking.plan,
        "tracking": tracking,
        "status_class": STATUS_CLASS,
        "number": view.number,
        "made": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "trend_periods": model.TREND_PERIODS,
    }


@router.get("/app/plan/export.html", response_class=HTMLResponse)
def export_html(runtime: RuntimeDep, request: Request) -> Response:
    got = _exported(runtime, request)
    if isinstance(got, Response):
        return got
    _, tracking = got
    html = ENV.get_template("dashboard/plan_export.html").render(**_export_context(tracking))
    return HTMLResponse(
        html,
        headers={
            "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'",
            "cache-control": "no-store",
            "x-content-type-options": "nosniff",
            "content-disposition": 'inline; filename="plan.html"',
        },
    )


@router.get("/app/plan/export.pdf")
def export_pdf(runtime: RuntimeDep, request: Request) -> Response:
    got = _exported(runtime, request)
    if isinstance(got, Response):
        return got
    _, tracking = got
    return Response(
        plan_pdf(tracking),
        media_type="application/pdf",
        headers={
            "cache-control": "no-store",
            "x-content-type-options": "nosniff",
            "content-disposition": 'attachment; filename="plan.pdf"',
        },
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plan_pdf(tracking: plans.PlanTracking) -> bytes:
    """The plan and its tracking on one A4 page (texts clipped so that five goals of five KPIs fit)."""
    from xml.sax.saxutils import escape

    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    plan = tracking.plan
    styles = getSampleStyleSheet()
    small = styles["BodyText"].clone("small", fontSize=8, leading=10)
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=14 * mm,
        rightMargin=14 * mm,
        topMargin=12 * mm,
        bottomMargin=12 * mm,
        title=_clip(f"Campaign plan: {plan.name}", 120),
        author="omniweave",
        invariant=True,
    )
    budget = view.number(plan.budget.total) + (f" {plan.budget.currency}" if plan.budget.currency else "")
    facts = (
        f"<b>Budget</b> {escape(budget)} &nbsp; <b>Channels</b> {escape(', '.join(plan.channels))}<br/>"
        f"<b>Personas</b> {escape(_clip(', '.join(plan.personas), 300))}"
    )
    rows: list[list[Any]] = [["KPI", "period", "target", "by", "current", "projection", "status"]]
    style = [
        ("FONT", (0, 0), (-1, -1), "Helvetica", 8),
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8),
        ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.black),
        ("ALIGN", (2, 1), (5, -1), "RIGHT"),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
    ]
    for i, goal in enumerate(plan.goals):
        style += [
            ("SPAN", (0, len(rows)), (-1, len(rows))),
            ("FONT", (0, len(rows)), (-1, len(rows)), "Helvetica-Bold", 8),
        ]
        style.append(("LINEABOVE", (0, len(rows)), (-1, len(rows)), 0.3, colors.grey))
        rows.append([Paragraph(f"<b>Goal {i + 1}: {escape(_clip(goal.name, 120))}</b>", small), "", "", "", "", "", ""])
        for k in tracking.goal_kpis(i):
            rows.append(
                [
                    k.kpi + (" (at most)" if k.direction == "down" else ""),
                    k.period,
                    view.number(k.target),
                    k.by.isoformat(),
                    view.number(k.current),
                    view.number(k.projection),
                    k.status,
                ]
            )
    table = Table(rows, colWidths=[58 * mm, 16 * mm, 22 * mm, 22 * mm, 22 * mm, 22 * mm, 20 * mm], repeatRows=1)
    table.setStyle(TableStyle(style))
    counts = ", ".join(f"{n} {s}" for s, n in tracking.counts.items())
    method = (
        f"Status: {escape(counts)}. A target is the KPI's value in the period holding its day. Met or missed: that "
        f"period is over in the data. Otherwise the projection is the least-squares line through the last "
        f"{model.TREND_PERIODS} whole periods, at the target's period (one period: flat). "
        f"Made by omniweave on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC."
    )
    doc.build(
        [
            Paragraph(escape(_clip(f"Campaign plan: {plan.name}", 140)), styles["Title"]),
            Paragraph(facts, styles["BodyText"]),
            Spacer(1, 3 * mm),
            table,
            Spacer(1, 3 * mm),
            Paragraph(method, small),
        ]
    )
    return out.getvalue()
