"""CLI commands of the event log: `omniweave log compact`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from omniweave.shells.cli.common import OutputFormat, console, opened
from omniweave.shells.render import emit, grid

log_app = typer.Typer(help="The event log (Parquet, partitioned by day).", no_args_is_help=True)


@log_app.command("compact")
def compact(
    ctx: typer.Context,
    day: Annotated[
        list[datetime] | None, typer.Option(formats=["%Y-%m-%d"], help="Only this day (YYYY-MM-DD; repeat).")
    ] = None,
    grace: Annotated[
        float | None,
        typer.Option(
            help="Seconds merged files stay for readers that listed them (default: compaction_grace_seconds)."
        ),
    ] = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
) -> None:
    """Merge each day's small loader files into files of about compaction_target_bytes, now (docs/scale.md)."""
    from omniweave.collect.compaction import compact as run_compaction
    from omniweave.collect.compaction import compaction_options

    with opened(ctx) as rt:
        options = compaction_options(rt.settings, grace_seconds=grace)
        run = run_compaction(rt, [d.date() for d in day] if day else None, options=options)
    rows = [[d.day, d.files_before, d.files_after, d.merged, d.written, d.rows, d.removed] for d in run.days]
    title = f"compaction: {run.merged} files merged into {run.written} over {len(run.days)} days"
    view = grid(["day", "files before", "files after", "merged", "written", "rows", "removed"], rows, title=title)
    emit(console, format, document=run.to_dict(), records=[d.to_dict() for d in run.days], views=[view])


def register(app: typer.Typer) -> None:
    """Add the `log` commands to the root app."""
    app.add_typer(log_app, name="log")
