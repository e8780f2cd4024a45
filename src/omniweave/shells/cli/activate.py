"""CLI commands `omniweave audiences ...` (registered on the main app by shells/cli/main.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

console = Console()


def register(app: typer.Typer, opened: Callable[[typer.Context], Any]) -> None:
    """Add the `audiences` commands to `app`; `opened(ctx)` is the context manager giving a Runtime."""
    audiences_app = typer.Typer(
        help="Segments as ad-platform audiences (customer match, custom audiences).", no_args_is_help=True
    )
    app.add_typer(audiences_app, name="audiences")

    @audiences_app.command("export")
    def export(
        ctx: typer.Context,
        segment: Annotated[str, typer.Argument(help="The segment's id (see `segments/`).")],
        to: Annotated[str, typer.Option("--to", help="Platform: google, meta or csv.")],
        output: Annotated[
            Path | None,
            typer.Option(help="Folder for the files (default <home>/exports/audiences/<segment>/).", file_okay=False),
        ] = None,
    ) -> None:
        """Write a segment's members who consented to advertising as hashed keys for an ad platform,
        with the adds and removes since the last export to it."""
        from omniweave.activate.service.audiences import export_audience

        with opened(ctx) as rt:
            summary = export_audience(rt, segment, to, output=output)
        console.print(summary.describe(), markup=False, highlight=False, soft_wrap=True)
