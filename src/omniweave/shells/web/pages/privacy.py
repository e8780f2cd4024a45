"""Privacy (for the privacy officer and owners: privacy:admin): the data-subject requests with their receipts, and
the consent rates per purpose and per channel.

The requests are `privacy.service.requests.list_requests` (as `omniweave privacy requests`: the newest 100) and
each one's receipts `get` (as `omniweave privacy requests <id>`); `?request=<id>` opens one. The consent rates are
`privacy.service.consent_rates.consent_rates` over the profiles: yes, no and never stated.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from omniweave.privacy import roles
from omniweave.privacy.service.consent_rates import consent_rates
from omniweave.privacy.service.requests import get, list_requests
from omniweave.shells.web import view
from omniweave.shells.web.app import Context, page


def when(at: float | None) -> str | None:
    """An epoch time as the CLI shows it (UTC, to the second)."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S") if at else None


def _share(value: float | None) -> float | None:
    return None if value is None else round(value * 100, 2)


def _rates_table(table_id: str, title: str, rates: list[Any]) -> view.Table:
    return view.Table(
        table_id,
        title,
        ("name", "column", "granted", "refused", "never stated", "profiles", "granted %", "refused %", "never %"),
        tuple(
            (
                r.name,
                r.column,
                r.granted,
                r.refused,
                r.never,
                r.profiles,
                _share(r.share(r.granted)),
                _share(r.share(r.refused)),
                _share(r.share(r.never)),
            )
            for r in rates
        ),
    )


def _rates_chart(table: view.Table, what: str) -> view.Chart:
    chart = view.bar_chart(
        table,
        "name",
        ["granted %", "refused %", "never %"],
        f"Share of profiles per {what}: granted, refused and never stated, stacked to 100 %",
        stacked=True,
        horizontal=True,
    )
    return dataclasses.replace(chart, option={**chart.option, "xAxis": {**chart.option["xAxis"], "max": 100}})


@page("privacy", "Privacy", scope=roles.PRIVACY_ADMIN)
def privacy(ctx: Context) -> view.Page:
    out = view.Page("dashboard/privacy.html", "Privacy")
    requests = list_requests(ctx.runtime)
    detailed = [get(ctx.runtime, r.id) for r in requests]
    out.add(
        view.Table(
            "requests",
            "Data-subject requests, newest first",
            ("id", "kind", "status", "subject", "person_id", "created", "finished", "error", "receipts"),
            tuple(
                (
                    r.id,
                    r.kind,
                    r.status,
                    r.subject,
                    r.person_id,
                    when(r.created_at),
                    when(r.finished_at),
                    r.error,
                    len(r.receipts),
                )
                for r in detailed
            ),
        )
    )
    out.add(
        view.Table(
            "receipts",
            "Receipts: what each request did, per target",
            ("request", "target", "action", "count", "detail", "at"),
            tuple(
                (r.id, receipt.target, receipt.action, receipt.count, receipt.detail, when(receipt.at))
                for r in detailed
                for receipt in r.receipts
            ),
        )
    )
    wanted = ctx.get("request")
    chosen = None
    if wanted is not None:  # an unknown id: `get` raises InputError naming the field `request` (a 400)
        chosen = next((r for r in detailed if r.id == wanted), None) or get(ctx.runtime, wanted)
    rates = ctx.cached(("consent-rates",), lambda: consent_rates(ctx.runtime))
    purposes = _rates_table("purposes", "Consent per purpose", [r for r in rates if r.kind == "purpose"])
    channels = _rates_table("channels", "Consent per channel", [r for r in rates if r.kind == "channel"])
    charts = []
    if purposes.rows:
        charts.append(out.add(_rates_chart(purposes, "purpose")))
    else:
        out.add(purposes)
    if channels.rows:
        charts.append(out.add(_rates_chart(channels, "channel")))
    else:
        out.add(channels)
    out.context.update(
        requests=detailed,
        chosen=chosen,
        when=when,
        charts=charts,
        profiles=rates[0].profiles if rates else 0,
    )
    return out
