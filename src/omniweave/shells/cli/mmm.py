"""CLI commands `omniweave mmm fit` and `omniweave mmm report`: the media-mix model (docs/mmm.md)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from omniweave.shells.cli.common import OutputFormat, console, opened
from omniweave.shells.render import emit, grid

mmm_app = typer.Typer(help="The media-mix model: what each channel (online and offline) adds to revenue.")


def _day(value: str | None, option: str) -> date | None:
    from omniweave.errors import InputError

    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"got {value!r}; expected a date YYYY-MM-DD", field=option) from None


@mmm_app.command("fit")
def mmm_fit(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="First day (YYYY-MM-DD); default: the first with spend.")] = None,
    until: Annotated[str | None, typer.Option(help="Day after the last (YYYY-MM-DD); default: the last.")] = None,
    granularity: Annotated[str, typer.Option(help="day or week.")] = "day",
    by: Annotated[str | None, typer.Option(help="region: in-store revenue per store city.")] = None,
    revenue: Annotated[str, typer.Option(help="all, store or online orders.")] = "all",
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap (same seed, same numbers).")] = 0,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates for the intervals.")] = 100,
    delayed: Annotated[bool, typer.Option(help="Delayed adstock (a peak after the spend).")] = False,
    lift_tests: Annotated[
        bool, typer.Option(help="Calibrate with the log's lift tests (omniweave import lift_tests FILE).")
    ] = True,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
) -> None:
    """Fit the media-mix model on the log's revenue and spend, and save it (the mmm_* datasets)."""
    from omniweave.measure.service.mmm import MmmRequest, fit_from_log, report_lines

    with opened(ctx) as rt:
        request = MmmRequest(
            since=_day(since, "since"),
            until=_day(until, "until"),
            granularity=granularity,
            by=by,
            revenue=revenue,
            seed=seed,
            bootstrap=bootstrap,
            delayed=delayed,
            lift_tests=lift_tests,
        )
        with console.status("fitting the media-mix model"):
            report = fit_from_log(rt, request)
    document = report.to_dict()
    header, rows, notes = report_lines(document)
    emit(
        console,
        format,
        document=document,
        records=report.records(),
        columns=tuple(report.records()[0]) if report.records() else ("channel",),
        views=[grid(header, rows, title=f"media-mix model from {document['first_day']}"), *notes],
    )


@mmm_app.command("report")
def mmm_report(
    ctx: typer.Context,
    chart: Annotated[Path, typer.Option(help="Where to write the chart (HTML with SVG).")] = Path("mmm.html"),
    format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
) -> None:
    """The saved fit as a table, and a chart file: contributions over time and response curves."""
    from omniweave.errors import InputError
    from omniweave.measure.service.mmm import chart_html, report_lines, saved_fit

    with opened(ctx) as rt:
        saved = saved_fit(rt)
        if saved is None:
            raise InputError("no media-mix fit saved yet: run `omniweave mmm fit` first", field="mmm_fit")
    document = saved.document
    chart.write_text(chart_html(document), encoding="utf-8")
    header, rows, notes = report_lines(document)
    emit(
        console,
        format,
        document=document,
        records=document["channels"],
        columns=tuple(document["channels"][0]) if document["channels"] else ("channel",),
        views=[grid(header, rows, title=f"media-mix model from {document['first_day']}"), *notes, f"chart: {chart}"],
    )


def register(app: typer.Typer) -> None:
    """Add `mmm fit` and `mmm report` to the root `app`."""
    app.add_typer(mmm_app, name="mmm")
