"""CLI commands of the segments stage: `segments list|validate|evaluate|follow` (personas: personas.py)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from omniweave.shells.cli.common import OutputFormat, console, err_console, opened
from omniweave.shells.render import emit, grid

segments_app = typer.Typer(help="Segments: audiences written as files (docs/segments.md).", no_args_is_help=True)


@segments_app.command("list")
def segments_list(
    ctx: typer.Context,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
) -> None:
    """List the segments: the built-in library and the project's `segments/` files."""
    from omniweave.segments.service.evaluate import load_segments, segment_summaries

    with opened(ctx) as rt:
        rows = segment_summaries(load_segments(rt.settings))
    columns = ("id", "name", "source", "description")
    emit(
        console,
        format,
        document=rows,
        records=rows,
        columns=columns,
        views=[grid(["id", "name", "from", "description"], [[row[c] for c in columns] for row in rows])],
    )


@segments_app.command("validate")
def segments_validate(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="Segment files (YAML or TOML).")],
) -> None:
    """Check segment files: every problem of every file is printed (exit code 2 if any)."""
    from omniweave.errors import InputError
    from omniweave.segments.service.evaluate import read_segment_file

    failed = False
    for path in files:
        try:
            seg = read_segment_file(path)
        except InputError as exc:
            err_console.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
            failed = True
            continue
        except OSError as exc:
            err_console.print(f"{path}: cannot read: {exc}", style="red", markup=False, highlight=False)
            failed = True
            continue
        console.print(f"{path}: ok ({seg.id})", markup=False, highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(2)


@segments_app.command("evaluate")
def segments_evaluate(
    ctx: typer.Context,
    engine: Annotated[str | None, typer.Option(help="duckdb or spark (default: the engine setting).")] = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Recount every behaviour condition over its whole window "
            "instead of carrying the last evaluation's counts forward.",
        ),
    ] = False,
) -> None:
    """Compute every segment's members, write `segment_members`, and log a Segment Entered / Exited event per change.

    Behaviour counts are carried forward from the last evaluation where the definitions allow, so a
    new day of events reads that day (and the days leaving the windows), not all history."""
    from omniweave.segments.service.evaluate import evaluate_segments

    with opened(ctx, engine) as rt, console.status("evaluating segments"):
        summary = evaluate_segments(rt, incremental=not full)
    document = summary.to_dict()
    emit(
        console,
        format,
        document=document,
        records=document["segments"],
        views=[
            grid(
                ["segment", "name", "members", "entered", "exited"],
                [[r.segment_id, r.name, f"{r.members:,}", f"{r.entered:,}", f"{r.exited:,}"] for r in summary.results],
                title=f"segments as of {summary.now:%Y-%m-%d %H:%M} UTC",
            ),
            f"behaviour conditions: {summary.counting}",
            f"{summary.events_written:,} Segment Entered / Exited events written to the event log",
        ],
    )


@segments_app.command("follow")
def segments_follow(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Process what the inbox holds now, then stop.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between looks at the inbox.")] = 0.5,
) -> None:
    """Keep event-based segments up to date in near real time: follow the collector's inbox and write a
    Segment Entered / Exited event as soon as an event changes a person's membership.

    Starts from the last `segments evaluate` (run that first, and regularly: it settles what the live
    path leaves to it, such as sequences, trait changes and persons not resolved yet)."""
    from omniweave.segments.service.live import LiveSegments

    with opened(ctx) as rt:
        live = LiveSegments(rt)
        console.print(
            f"following the inbox for {len(live.live)} event-based segment(s) "
            f"({', '.join(live.live)}), counts as of {live.base:%Y-%m-%d %H:%M:%S} UTC"
        )

        def show(changes: list) -> None:  # type: ignore[type-arg]
            for c in changes:
                console.print(
                    f"{c.at:%Y-%m-%d %H:%M:%S} {c.person_id} {'entered' if c.entered else 'left'} {c.segment_id}",
                    markup=False,
                    highlight=False,
                )

        if once:
            while True:
                show(live.step())
                if not live.read_last:
                    break
            st = live.stats
            console.print(
                f"{st.events:,} events read, {st.matched:,} matched a condition, {st.changes:,} changes; "
                f"{st.unknown_person:,} of persons not resolved yet, {st.before_base:,} dated before the "
                f"counts"
            )
            return
        with contextlib.suppress(KeyboardInterrupt):
            live.follow(interval=interval, on_changes=show)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root `app`."""
    app.add_typer(segments_app, name="segments")
