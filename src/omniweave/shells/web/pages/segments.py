"""Segments and personas: every segment's definition (its rule in words), its size now and over time, the
overlaps between segments, the personas, and the audience export.

The numbers are the service layer's: sizes from `segments.service.catalog.list_segments` (as `GET /v1/segments`),
sizes over time and overlaps from `segments.service.sizes` (the `Segment Entered` / `Exited` events, and
`segment_members`), suggested personas from `segments.service.personas.suggest_from_profiles` (as
`omniweave personas suggest [--k K] --format json`), computed only when asked (`?suggest=1`).

An audience export (`omniweave audiences export`) writes files and the `audience_exports` dataset, so it is a POST
with the page's CSRF token, for roles that may run activations (`journeys:run`) or change the configuration
(`config:manage`); the files it wrote can be downloaded after.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from omniweave.errors import InputError
from omniweave.privacy import roles, sessions
from omniweave.privacy.roles import Principal
from omniweave.segments import language as S
from omniweave.shells.api.deps import RuntimeDep, client_origin
from omniweave.shells.web import view
from omniweave.shells.web.app import Context, page, render, router, viewer

EXPORT_SCOPES = (roles.JOURNEYS_RUN, roles.CONFIG_MANAGE)
"""Either lets a user export an audience (an activation that writes files for an ad platform)."""
EXPORT_FILE = re.compile(r"^[a-z]+-\d{8}T\d{6}Z(-\d+)?(-[a-z-]+)?\.csv$")
"""The names `export_audience` gives its files (activate/service/audiences.py)."""
SIZE_SERIES = 12
"""At most this many segments drawn in the sizes chart (the largest now); the table has every one."""

_SYMBOLS = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
"""As `omniweave personas suggest` prints a rule (shells/cli/personas.py)."""
_COUNTS = {"at_least": "at least", "at_most": "at most", "exactly": "exactly"}


# --- a condition in words -------------------------------------------------------------------------------


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "(" + ", ".join(_value(v) for v in value) + ")"
    return str(value)


def _days(n: float) -> str:
    return f"{n:g} day" + ("" if n == 1 else "s")


def _test(name: str, op: str, value: Any) -> str:
    if op in _SYMBOLS:
        return f"{name} {_SYMBOLS[op]} {_value(value)}"
    if op == "in":
        return f"{name} in {_value(value)}"
    if op == "not_in":
        return f"{name} not in {_value(value)}"
    if op == "between":
        return f"{name} between {_value(value[0])} and {_value(value[1])}"
    if op == "is_null":
        return f"{name} is empty" if value else f"{name} is set"
    if op == "contains":
        return f"{name} contains {value!r}"
    if op == "before_days_ago":
        return f"{name} more than {_days(value)} ago"
    if op == "within_days":
        return f"{name} within the last {_days(value)}"
    return f"{name} {op} {_value(value)}"


def _filters(filters: tuple[S.Filter, ...]) -> str:
    return " (" + ", ".join(_test(f.key, f.op, f.value) for f in filters) + ")" if filters else ""


def _behaviour(b: S.Behaviour) -> str:
    if b.negated:
        text = f"did not perform {b.event}{_filters(b.filters)}"
    else:
        times = "" if (b.count_op, b.count) == ("at_least", 1) else f" {_COUNTS[b.count_op]} {b.count} times"
        text = f"performed {b.event}{_filters(b.filters)}{times}"
    if b.within_days is not None:
        text += f" in the last {_days(b.within_days)}"
    if b.then_not is not None:
        t = b.then_not
        text += f", then no {t.event}{_filters(t.filters)} within {t.within_hours:g} h"
    return text


def rule_text(condition: S.Condition) -> str:
    """A segment's condition tree in one line of words, as a marketer reads it and as `personas suggest` prints
    a rule: `rfm_monetary >= 4 and last_order_at more than 30 days ago`."""
    if isinstance(condition, S.All | S.AnyOf):
        joiner = " and " if isinstance(condition, S.All) else " or "
        parts = []
        for child in condition.children:
            text = rule_text(child)
            nested = isinstance(child, S.All | S.AnyOf) and len(child.children) > 1
            parts.append(f"({text})" if nested else text)
        return joiner.join(parts)
    if isinstance(condition, S.Not):
        return f"not ({rule_text(condition.child)})"
    if isinstance(condition, S.Trait):
        return _test(condition.name, condition.op, condition.value)
    if isinstance(condition, S.Behaviour):
        return _behaviour(condition)
    if isinstance(condition, S.InSegment):
        return f"in segment {condition.segment_id}"
    return f"bucket {condition.low}-{condition.high - 1} of {condition.salt!r}"


# --- the page --------------------------------------------------------------------------------------------


def may_export(principal: Principal) -> bool:
    return any(principal.allows(scope) for scope in EXPORT_SCOPES)


def _catalogue(ctx: Context) -> tuple[dict[str, S.Segment], list[Any]]:
    """The definitions (read each time: files change without the warehouse changing) and the catalogue with the
    sizes (`GET /v1/segments`), kept while neither the data nor the set of definitions changes."""
    from omniweave.segments.service.catalog import list_segments
    from omniweave.segments.service.evaluate import load_segments

    definitions = load_segments(ctx.runtime.settings)
    key = tuple(sorted((s.id, s.source, hash(s)) for s in definitions.values()))
    return definitions, ctx.cached(("segments", "catalogue", key), lambda: list(list_segments(ctx.runtime)))


def _size_table(history: Any, ids: list[str], title: str, table_id: str) -> view.Table:
    by_period: dict[str, dict[str, int]] = {}
    for p in history.points:
        by_period.setdefault(p.period.isoformat(), {})[p.segment_id] = p.members
    rows = tuple(
        (period.isoformat(), *(by_period.get(period.isoformat(), {}).get(s) for s in ids)) for period in history.periods
    )
    return view.Table(table_id, title, ("period", *ids), rows)


def _overlap_chart(overlaps: Any, names: dict[str, str]) -> view.Chart:
    ids = list(overlaps.segment_ids)
    table = view.Table(
        "overlaps",
        "Overlaps: members in both segments",
        ("segment", *ids),
        tuple((a, *overlaps.both[i]) for i, a in enumerate(ids)),
    )
    data = [[j, i, overlaps.both[i][j]] for i in range(len(ids)) for j in range(len(ids))]
    off_diagonal = [overlaps.both[i][j] for i in range(len(ids)) for j in range(len(ids)) if i != j]
    option = {
        "tooltip": {"position": "top"},
        "grid": {"left": 170, "right": 16, "top": 16, "bottom": 150},
        "xAxis": {
            "type": "category",
            "data": ids,
            "axisLabel": {"rotate": 45, "interval": 0},
            "splitArea": {"show": True},
        },
        "yAxis": {"type": "category", "data": ids, "axisLabel": {"interval": 0}, "splitArea": {"show": True}},
        "visualMap": {
            "min": 0,
            "max": max(off_diagonal, default=0) or 1,
            "calculable": True,
            "orient": "horizontal",
            "left": "center",
            "bottom": 0,
            "inRange": {"color": ["#f4f7fb", "#1f5fa8"]},
        },
        "series": [{"name": "members in both", "type": "heatmap", "data": data, "label": {"show": True}}],
    }
    largest = max(
        ((overlaps.both[i][j], ids[i], ids[j]) for i in range(len(ids)) for j in range(i + 1, len(ids))),
        default=None,
    )
    described = (
        f"; the largest overlap is {largest[0]:,} persons, in {names.get(largest[1], largest[1])} and "
        f"{names.get(largest[2], largest[2])}"
        if largest
        else ""
    )
    return view.Chart(
        table,
        option,
        f"A matrix of {len(ids)} segments: each cell is the number of persons in both the row's and the column's "
        f"segment, the diagonal each segment's size{described}.",
        height=max(360, 34 * len(ids) + 190),
    )


def _persona_rule(persona_id: str, where: Any) -> str:
    try:
        return rule_text(S.parse_segment({"id": persona_id, "where": where}).where)
    except S.SegmentError:  # a persona whose rule has no condition: everyone
        return "everyone"


def _persona_count(text: str | None) -> int | None:
    """`k`, the number of personas asked for (None: chosen by silhouette in 3..8, as `personas suggest`)."""
    from omniweave.segments.personas import K_RANGE

    if text is None:
        return None
    if not text.isdigit() or not K_RANGE[0] <= int(text) <= K_RANGE[1]:
        raise InputError(
            f"k must be a whole number from {K_RANGE[0]} to {K_RANGE[1]} (or left out), got {text!r}", field="k"
        )
    return int(text)


def _suggestions(ctx: Context, k: int | None) -> view.Table:
    from omniweave.segments.service.personas import suggest_from_profiles

    result = ctx.cached(("segments", "suggest", k), lambda: suggest_from_profiles(ctx.runtime, k=k, seed=0))
    rows = tuple(
        (
            r.persona.id,
            r.persona.name,
            r.persona.size,
            round(r.persona.share * 100, 1),
            _persona_rule(r.persona.id, r.persona.where),
            r.rule_selects,
            round(r.precision * 100, 1),
            round(r.recall * 100, 1),
            ", ".join(r.persona.target_kpis),
            ", ".join(r.persona.preferred_channels) or "–",
            r.persona.description,
        )
        for r in result.personas
    )
    return view.Table(
        "suggested",
        f"{result.k} personas suggested from {result.profiles:,} profiles",
        (
            "id",
            "name",
            "persons",
            "share %",
            "rule",
            "rule selects",
            "precision %",
            "recall %",
            "target KPIs",
            "preferred channels",
            "description",
        ),
        rows,
    )


@page("segments", "Segments")
def segments(ctx: Context) -> view.Page:
    from omniweave.activate.audiences import PLATFORMS
    from omniweave.segments.service.sizes import overlaps, size_history

    period = view.parse_period(ctx.get("period", "day"))
    definitions, summaries = _catalogue(ctx)
    chosen = ctx.get("segment")
    if chosen is not None and chosen not in definitions:
        raise InputError(
            f"no segment {chosen!r}; expected one of {', '.join(sorted(definitions)) or '(none)'}", field="segment"
        )
    suggest = ctx.get("suggest")
    if suggest not in (None, "1"):
        raise InputError(f"suggest must be 1 (or left out), got {suggest!r}", field="suggest")
    k = _persona_count(ctx.get("k"))
    history = ctx.cached(("segments", "history", period), lambda: size_history(ctx.runtime, period))
    shared = ctx.cached(("segments", "overlaps"), lambda: overlaps(ctx.runtime, sorted(definitions)))
    names = {s.id: s.name or s.id for s in summaries}
    out = view.Page("dashboard/segments.html", "Segments and personas")

    catalogue = view.Table(
        "segments",
        "Every segment: its rule and its members as last evaluated",
        ("id", "name", "source", "members", "rule", "description"),
        tuple(
            (s.id, s.name, s.source, s.members, rule_text(definitions[s.id].where), s.description) for s in summaries
        ),
    )
    out.add(catalogue)
    now = {s.id: s.members or 0 for s in summaries}
    drawn = sorted((s for s in history.segments() if s in definitions), key=lambda s: (-now.get(s, 0), s))
    sizes = _size_table(history, drawn, f"Members per {period} (at the period's end)", "sizes")
    out.add(sizes)
    chart_ids = drawn[:SIZE_SERIES]
    chart_table = view.Table(
        "sizes_drawn",
        f"Segment sizes per {period}" + (f" (the {SIZE_SERIES} largest)" if len(drawn) > SIZE_SERIES else ""),
        ("period", *chart_ids),
        tuple(row[: len(chart_ids) + 1] for row in sizes.rows),
    )
    size_chart = view.line_chart(
        chart_table,
        "period",
        chart_ids,
        f"Members of {len(chart_ids)} segments at the end of each {period} from {history.periods[0]} to "
        f"{history.periods[-1]}, from the Segment Entered and Exited events"
        if history.periods
        else "No segment membership change has been logged yet.",
        y_name="members",
    )
    out.add(size_chart)
    overlap_chart = _overlap_chart(shared, names)
    out.add(overlap_chart)

    personas = [s for s in summaries if s.persona is not None]
    persona_table = view.Table(
        "personas",
        "Personas: segments with target KPIs and preferred channels",
        ("id", "name", "members", "target KPIs", "preferred channels", "rule"),
        tuple(
            (
                s.id,
                s.name,
                s.members,
                ", ".join(s.persona["target_kpis"]) or "–",
                ", ".join(s.persona["preferred_channels"]) or "–",
                rule_text(definitions[s.id].where),
            )
            for s in personas
        ),
    )
    out.add(persona_table)
    suggested = _suggestions(ctx, k) if suggest == "1" else None
    if suggested is not None:
        out.add(suggested)

    detail = None
    if chosen is not None:
        summary = next(s for s in summaries if s.id == chosen)
        mine = view.Table(
            "history",
            f"{names[chosen]}: entered, left and members per {period}",
            ("period", "entered", "exited", "members"),
            tuple((p.period.isoformat(), p.entered, p.exited, p.members) for p in history.series(chosen)),
        )
        out.add(mine)
        ids = list(shared.segment_ids)
        shares = view.Table(
            "shared",
            f"{names[chosen]}: members also in another segment",
            ("segment", "name", "in both", "share of this segment %"),
            tuple(
                (
                    other,
                    names.get(other, other),
                    shared.of(chosen, other),
                    round(shared.of(chosen, other) / summary.members * 100, 1) if summary.members else None,
                )
                for other in ids
                if other != chosen and chosen in ids
            ),
        )
        out.add(shares)
        detail = {
            "summary": summary,
            "rule": rule_text(definitions[chosen].where),
            "history": mine,
            "shared": shares,
        }
    out.context.update(
        period=period,
        catalogue=catalogue,
        size_chart=size_chart,
        overlap_chart=overlap_chart,
        personas=persona_table,
        suggested=suggested,
        chosen=chosen,
        detail=detail,
        segment_ids=sorted(definitions),
        names=names,
        may_export=may_export(ctx.principal),
        platforms=PLATFORMS,
        exported=None,
        k=k,
    )
    return out


# --- the audience export (a change: POST with the CSRF token) -------------------------------------------


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > 16_384:
        raise InputError("the form is larger than 16 KB", field="body")
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20)
    return {k: v[-1] for k, v in parsed.items()}


def _refused(
    request: Request, principal: Principal | None, status: int, title: str, message: str, field: str = ""
) -> Response:
    return render(
        "dashboard/error.html", request, principal, status=status, title=title, message=message, field=field or None
    )


def _export_folder(runtime: Any, segment_id: str) -> Path:
    return Path(runtime.settings.home_path) / "exports" / "audiences" / segment_id


@router.post("/app/segments/export", response_class=HTMLResponse)
async def export_audience_form(runtime: RuntimeDep, request: Request) -> Response:
    """Export a segment's consented members for an ad platform (`omniweave audiences export SEGMENT --to P`)."""
    from omniweave.activate.service.audiences import export_audience
    from omniweave.privacy.service.audit import record

    principal = viewer(runtime, request)
    if principal is None:
        return RedirectResponse("/app/login?next=%2Fapp%2Fsegments", status_code=303)
    if not may_export(principal):
        return _refused(
            request,
            principal,
            403,
            "Not for your role",
            f"Exporting an audience needs the scope {' or '.join(EXPORT_SCOPES)}; your role is {principal.role}.",
        )
    try:
        form = await _form(request)
    except InputError as exc:
        return _refused(request, principal, 400, "Segments: bad request", str(exc), exc.field or "")
    if not sessions.csrf_ok(request.cookies.get(sessions.COOKIE_NAME) or "", form.get("csrf")):
        return _refused(
            request, principal, 403, "Not exported", "The form's CSRF token is missing or wrong; reload the page."
        )
    segment_id, platform = form.get("segment", ""), form.get("to", "")
    try:
        summary = await run_in_threadpool(export_audience, runtime, segment_id, platform)
    except InputError as exc:
        return _refused(request, principal, 400, "Segments: bad request", str(exc), exc.field or "")
    record(
        runtime,
        principal.actor,
        "audience.export",
        f"segment:{segment_id}",
        {"to": platform, "exported": summary.exported, "keys": summary.keys},
        client_origin(request),
    )
    files = [Path(f).name for f in summary.files]
    return render(
        "dashboard/segments.html",
        request,
        principal,
        current="segments",
        title="Audience exported",
        exported=summary,
        files=files,
    )


@router.get("/app/segments/export/{segment_id}/{file}")
def export_file(runtime: RuntimeDep, request: Request, segment_id: str, file: str) -> Response:
    """A file an audience export wrote (hashed keys only), for the roles that may export."""
    principal = viewer(runtime, request)
    if principal is None:
        return RedirectResponse("/app/login?next=%2Fapp%2Fsegments", status_code=303)
    if not may_export(principal):
        return _refused(
            request, principal, 403, "Not for your role", "Audience files are for the roles that export them."
        )
    if not S.ID_PATTERN.match(segment_id) or not EXPORT_FILE.match(file):
        return _refused(request, principal, 404, "No such file", f"No audience file {file!r} of {segment_id!r}.")
    path = _export_folder(runtime, segment_id) / file
    if not path.is_file():
        return _refused(request, principal, 404, "No such file", f"No audience file {file!r} of {segment_id!r}.")
    return FileResponse(
        path,
        media_type="text/csv; charset=utf-8",
        filename=file,
        headers={"cache-control": "no-store", "x-content-type-options": "nosniff"},
    )
