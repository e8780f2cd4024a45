"""Journeys and messages: every journey, then one journey (`?journey=<name>`) as a graph of its steps with the
runs that reached each (entered, sent, skipped by reason, converted), the holdout's lift, its messages previewed
per channel for a person, and what became of the messages sent over time (deliveries, opens, clicks, bounces,
unsubscribes).

The numbers are the service layer's: `activate.service.journey_stats.list_journeys` and `journey_stats` with the
CLI's holdout test (the same as `omniweave journeys list|stats --format json` and `GET /v1/journeys/{name}/stats`),
`activate.service.messages.preview` (`omniweave messages preview`) and
`activate.service.journey_report.message_activity` (the channels' feedback events in the event log). Journey runs
live in the operational store, which changes without the warehouse changing: their counts are read on every
view; the previews and the feedback over time are kept until the warehouse changes.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any

from omniweave.activate.journeys import model
from omniweave.errors import InputError
from omniweave.privacy import masking
from omniweave.privacy.roles import mask_personal_data
from omniweave.shells.web import view
from omniweave.shells.web.app import Context, page

KIND_COLOURS = {
    "Send": "#5b1780",
    "Wait": "#6b7280",
    "WaitUntilWindow": "#6b7280",
    "WaitForEvent": "#1f5fa8",
    "Branch": "#b45309",
    "Split": "#b45309",
    "Exit": "#176b2c",
}
"""A node's colour by the kind of its step (the table names the kind too: colour is never the only sign)."""
ACTIVITY_MEASURES = ("delivered", "opened", "clicked", "bounced", "unsubscribed")


# --- the graph ------------------------------------------------------------------------------------------


def _edges(step: model.Step) -> list[tuple[str, str]]:
    """(target, label) of every way out of `step`."""
    a = step.action
    out: list[tuple[str, str]] = []
    if isinstance(a, model.WaitForEvent):
        out += [(a.on_event, "event"), (a.on_timeout, "timeout")]
    elif isinstance(a, model.Branch):
        out += [(arm.next, f"if {i + 1}") for i, arm in enumerate(a.arms)] + [(a.otherwise, "otherwise")]
    elif isinstance(a, model.Split):
        out += [(target, f"{name} {weight:g}") for name, weight, target in a.arms]
    elif not isinstance(a, model.Exit):
        out.append((a.next, "next"))
    if step.on_error:
        out.append((step.on_error, "error"))
    return out


def _layout(journey: model.Journey) -> list[tuple[str, int]]:
    """Every step with its depth (steps from the start, breadth first), in the order reached."""
    depth = {journey.start: 0}
    order = [journey.start]
    queue = deque([journey.start])
    while queue:
        current = queue.popleft()
        step = journey.steps.get(current)
        if step is None:
            continue
        for target, _ in _edges(step):
            if target not in depth:
                depth[target] = depth[current] + 1
                order.append(target)
                queue.append(target)
    deepest = max(depth.values(), default=0)
    for step_id in journey.steps:  # not reachable from the start: drawn after the rest
        if step_id not in depth:
            depth[step_id] = deepest + 1
            order.append(step_id)
    return [(s, depth[s]) for s in order]


def _what(step: model.Step | None) -> str:
    if step is None:
        return "(an earlier version's step)"
    a = step.action
    if isinstance(a, model.Send):
        fallback = f" (else {', '.join(a.fallback)})" if a.fallback else ""
        return f"send {a.message} on {a.channel}{fallback}"
    if isinstance(a, model.Wait):
        return f"wait {a.seconds / 3600:g} h"
    if isinstance(a, model.WaitUntilWindow):
        return f"wait until {a.start}–{a.end}"
    if isinstance(a, model.WaitForEvent):
        awaited = a.event or f"{a.segment_change} segment {a.segment}"
        return f"wait for {awaited} (at most {a.timeout / 3600:g} h)"
    if isinstance(a, model.Branch):
        return f"branch ({len(a.arms)} conditions)"
    if isinstance(a, model.Split):
        return "split " + " / ".join(f"{name} {weight:g}" for name, weight, _ in a.arms)
    if isinstance(a, model.IssueCoupon):
        return f"issue a coupon of {a.pool}"
    if isinstance(a, model.UpdateTrait):
        return f"set {a.trait}"
    if isinstance(a, model.CallWebhook):
        return "call a webhook"
    if isinstance(a, model.Exit):
        return f"exit ({a.reason})"
    return step.kind


def _nodes(journey: model.Journey, stats: Any) -> tuple[view.Table, view.Table, list[tuple[str, int]]]:
    """The per-node table (every step of the definition, then any step of an earlier version with runs) and the
    skipped-by-reason table, from `journey_stats`."""
    counted = {n.node: n for n in stats.nodes} if stats is not None else {}
    placed = _layout(journey)
    deepest = max((d for _, d in placed), default=0)
    placed += [(n, deepest + 1) for n in counted if n not in journey.steps]
    rows = []
    reasons = []
    for node, _ in placed:
        step = journey.steps.get(node)
        n = counted.get(node)
        skipped = n.skipped if n is not None else {}
        other = n.other if n is not None else {}
        rows.append(
            (
                node,
                step.kind if step is not None else "earlier version",
                (step.label or _what(step)) if step is not None else _what(None),
                n.entered if n is not None else 0,
                n.sent if n is not None else 0,
                sum(skipped.values()),
                n.converted if n is not None else 0,
                ", ".join(f"{k} {v}" for k, v in sorted(other.items())) or "",
                ", ".join(f"{label} → {target}" for target, label in _edges(step)) if step is not None else "",
            )
        )
        reasons += [(node, reason, count) for reason, count in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0]))]
    nodes = view.Table(
        "nodes",
        f"{journey.name}: runs per step",
        ("node", "kind", "what", "entered", "sent", "skipped", "converted", "other", "next"),
        tuple(rows),
    )
    skipped_table = view.Table(
        "skipped", f"{journey.name}: sends skipped, by reason", ("node", "reason", "skipped"), tuple(reasons)
    )
    return nodes, skipped_table, placed


def _graph(journey: model.Journey, nodes: view.Table, placed: list[tuple[str, int]]) -> view.Chart:
    by_depth: dict[int, int] = {}
    position = {}
    for node, depth in placed:
        position[node] = (depth, by_depth.get(depth, 0))
        by_depth[depth] = by_depth.get(depth, 0) + 1
    widest = max(by_depth.values(), default=1)
    rows = {row[0]: row for row in nodes.rows}
    biggest = max((row[3] for row in nodes.rows), default=0) or 1
    data = []
    for node, _ in placed:
        row = rows[node]
        depth, index = position[node]
        entered, sent, skipped, converted = row[3], row[4], row[5], row[6]
        figures = [f"{entered:,} entered"]
        figures += [f"{sent:,} sent"] if sent else []
        figures += [f"{skipped:,} skipped"] if skipped else []
        figures += [f"{converted:,} converted"] if converted else []
        data.append(
            {
                "name": node,
                "value": entered,
                "x": depth * 180,
                "y": (index - (by_depth[depth] - 1) / 2) * 90,
                "symbolSize": 18 + 30 * entered / biggest,
                "itemStyle": {"color": KIND_COLOURS.get(row[1], "#4a4a55")},
                "label": {"show": True, "position": "bottom", "formatter": node + "\n" + " · ".join(figures)},
                "tooltip": {"formatter": f"{node} ({row[2]}): " + ", ".join(figures)},
            }
        )
    links = [
        {"source": node, "target": target, "label": {"show": True, "formatter": label, "fontSize": 10}}
        for node, _ in placed
        if node in journey.steps
        for target, label in _edges(journey.steps[node])
        if target in rows
    ]
    option = {
        "tooltip": {},
        "series": [
            {
                "type": "graph",
                "layout": "none",
                "roam": True,
                "edgeSymbol": ["none", "arrow"],
                "edgeSymbolSize": 8,
                "lineStyle": {"color": "#8a8a96", "width": 1.5, "curveness": 0.15},
                "label": {"fontSize": 11},
                "data": data,
                "links": links,
            }
        ],
    }
    start = rows.get(journey.start)
    return view.Chart(
        nodes,
        option,
        f"The {len(data)} steps of {journey.name} from its start, {journey.start}, each with the runs that reached it"
        + (f" ({start[3]:,} entered at the start)" if start else "")
        + "; the table lists every step with its counts and where it leads.",
        height=max(320, 90 * widest + 120),
    )


# --- previews -------------------------------------------------------------------------------------------

_SCRIPT = re.compile(r"<script\b.*?</script\s*>", re.I | re.S)
_TAGS = re.compile(r"<(?:script|link|iframe|object|embed|base|meta|frame)\b[^>]*>", re.I)
_SOURCES = re.compile(r"""(\s)(src|srcset|background|poster|action)(\s*=\s*)("[^"]*"|'[^']*'|[^\s>]+)""", re.I)
_CSS_URLS = re.compile(r"""url\(\s*(?!['"]?data:)[^)]*\)""", re.I)


def offline_html(html: str) -> str:
    """An e-mail's HTML that loads nothing when shown: no scripts, frames or linked files, every image and other
    source renamed to `data-blocked-…` (the dashboard fetches from its own origin only), `url(…)` in styles
    emptied. Shown in a sandboxed frame that runs no script either."""
    html = _TAGS.sub("", _SCRIPT.sub("", html))
    html = _SOURCES.sub(lambda m: f"{m.group(1)}data-blocked-{m.group(2).lower()}{m.group(3)}{m.group(4)}", html)
    return _CSS_URLS.sub("none", html)


def _sends(journey: model.Journey) -> list[dict[str, Any]]:
    """The journey's send steps: step, message, the channel it names and its fallbacks."""
    out = []
    for step_id, _ in _layout(journey):
        step = journey.steps.get(step_id)
        if step is not None and isinstance(step.action, model.Send):
            a = step.action
            out.append({"step": step_id, "message": a.message, "channel": a.channel, "fallback": list(a.fallback)})
    return out


def _previews(ctx: Context, journey: model.Journey, sends: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The journey's messages with the channels each is written for, and the preview asked for (`message`,
    `via`, `person`): rendered only when asked, as rendering for a person reads their profile and identities."""
    from omniweave.activate.service.messages import get_message

    if not sends:
        return None
    offered = {}
    for s in sends:
        if s["message"] not in offered:
            offered[s["message"]] = list(get_message(ctx.runtime.settings, s["message"]).channels)
    wanted = ctx.get("message")
    if wanted is None and (ctx.get("via") or ctx.get("person")):
        wanted = sends[0]["message"]
    if wanted is None:
        return {"offered": offered, "shown": None}
    if wanted not in offered:
        raise InputError(f"{journey.name} sends no message {wanted!r}; it sends {', '.join(offered)}", field="message")
    first = next(s for s in sends if s["message"] == wanted)
    channel = ctx.get("via", first["channel"] if first["channel"] in offered[wanted] else offered[wanted][0])
    if channel not in offered[wanted]:
        raise InputError(
            f"{wanted} is not written for {channel!r}; its channels are {', '.join(offered[wanted])}", field="via"
        )
    return {"offered": offered, "shown": _preview(ctx, journey.name, wanted, channel)}


def _preview(ctx: Context, journey: str, message: str, channel: str) -> dict[str, Any]:
    """`messages preview` of `message` on `channel` for the person asked for (else the journey's sample person);
    for a role that sees personal data masked, without personalisation and with the addresses masked."""
    from omniweave.activate.service.journey_report import preview_person
    from omniweave.activate.service.messages import PreviewRequest, preview

    given = ctx.get("person") or ""
    person = given or preview_person(ctx.runtime, journey)
    shown: dict[str, Any] = {"message": message, "channel": channel, "person_given": given, "person_id": None}
    if person is None:
        return shown
    masked = ctx.principal.masks_pii
    request = PreviewRequest(message, person, channel, not_personalised=masked)
    result = ctx.cached(("journeys", "preview", request), lambda: preview(ctx.runtime, request))
    content = dict(result.rendition.content)
    to = result.to
    if masked:
        content = mask_personal_data(content)
        to = masking.mask(to) if to else to
    shown.update(
        person_id=result.person_id,
        to=to,
        sender=result.rendition.sender,
        content=content,
        findings=[f.to_dict() for f in result.findings],
        notes=list(result.notes),
        masked=masked,
    )
    if channel == "email" and "html" in content:
        shown["html"] = offline_html(str(content["html"]))  # escaped into the frame's srcdoc by the template
    return shown


# --- the page -------------------------------------------------------------------------------------------


def _activity(ctx: Context, period: str) -> Any:
    from omniweave.activate.service.journey_report import message_activity

    return ctx.cached(("journeys", "activity", period), lambda: message_activity(ctx.runtime, period))


def _activity_chart(activity: Any, period: str, journey: str | None, channel: str | None) -> view.Chart:
    totals = activity.totals(journey=journey, channel=channel)
    rows = tuple((p.isoformat(), *(counts[m] for m in ACTIVITY_MEASURES)) for p, counts in totals)
    whose = f"{journey}'s messages" if journey else "every message (journeys and campaigns)"
    on = f" on {channel}" if channel else ""
    table = view.Table(
        "activity",
        f"Deliveries, opens, clicks, bounces and unsubscribes per {period}: {whose}{on}",
        ("period", *ACTIVITY_MEASURES),
        rows,
    )
    described = (
        f"{sum(r[1] for r in rows):,} deliveries, {sum(r[2] for r in rows):,} opens, {sum(r[3] for r in rows):,} "
        f"clicks, {sum(r[4] for r in rows):,} bounces and {sum(r[5] for r in rows):,} unsubscribes of {whose}{on}, "
        f"per {period} from {rows[0][0]} to {rows[-1][0]}"
        if rows
        else f"No delivery, open, click, bounce or unsubscribe of {whose}{on} is in the event log."
    )
    return view.line_chart(table, "period", ACTIVITY_MEASURES, described, y_name="events")


@page("journeys", "Journeys")
def journeys(ctx: Context) -> view.Page:
    from omniweave.activate.service.journey_report import journey_definition
    from omniweave.activate.service.journey_stats import journey_stats, list_journeys
    from omniweave.shells.cli.journeys import holdout_test

    period = view.parse_period(ctx.get("period", "day"))
    listed = list_journeys(ctx.runtime)
    known = [j.name for j in listed]
    chosen = ctx.get("journey")
    if chosen is not None and chosen not in known:
        raise InputError(f"no journey {chosen!r}; expected one of {', '.join(known) or '(none)'}", field="journey")
    activity_all = _activity(ctx, period)
    channels = activity_all.channels()
    channel = ctx.get("channel")
    if channel is not None and channel not in channels:
        raise InputError(
            f"no message feedback on channel {channel!r}; channels with some: {', '.join(channels) or '(none)'}",
            field="channel",
        )
    out = view.Page("dashboard/journeys.html", "Journeys and messages")
    catalogue = view.Table(
        "journeys",
        "Every journey: its published version and its runs by status",
        ("name", "source", "published version", "runs", "entry", "description"),
        tuple(
            (
                j.name,
                j.source,
                j.published_version,
                ", ".join(f"{k} {v}" for k, v in sorted(j.runs.items())) or "–",
                j.entry,
                j.description if not j.problems else f"(invalid file: {j.problems} problems)",
            )
            for j in listed
        ),
    )
    out.add(catalogue)
    activity = _activity_chart(activity_all, period, chosen, channel)
    out.add(activity)
    detail = None
    if chosen is not None:
        definition = journey_definition(ctx.runtime, chosen)
        journey = definition.journey
        summary = next(j for j in listed if j.name == chosen)
        stats = (
            journey_stats(ctx.runtime, chosen, compare=holdout_test)
            if summary.published_version is not None or summary.runs
            else None
        )
        nodes, skipped, placed = _nodes(journey, stats)
        graph = _graph(journey, nodes, placed)
        out.add(graph)
        out.add(skipped)
        holdout = None
        if stats is not None:
            holdout = view.Table(
                "holdout",
                f"{chosen}: the treated runs against the holdout (goal conversions)",
                ("group", "runs", "converted", "conversion rate %"),
                tuple(
                    (group, runs, converted, round(converted / runs * 100, 2) if runs else None)
                    for group, (runs, converted) in (("treated", stats.treated), ("held out", stats.held_out))
                ),
            )
            out.add(holdout)
        sends = _sends(journey)
        detail = {
            "journey": journey,
            "summary": summary,
            "published_version": definition.published_version,
            "stats": stats,
            "nodes": nodes,
            "graph": graph,
            "skipped": skipped,
            "holdout": holdout,
            "lift": stats.lift if stats is not None else None,
            "lift_note": stats.lift_note if stats is not None else "not published: no runs yet",
            "runs": stats.runs if stats is not None else {},
            "sends": sends,
            "previews": _previews(ctx, journey, sends),
        }
    out.context.update(
        period=period,
        catalogue=catalogue,
        activity=activity,
        chosen=chosen,
        channel=channel,
        channels=channels,
        detail=detail,
    )
    return out
