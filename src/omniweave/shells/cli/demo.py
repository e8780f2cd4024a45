"""CLI command `omniweave demo`: the simulated retailer."""

from __future__ import annotations

from typing import Annotated

import typer

from omniweave.shells.cli.common import console, settings_of


def demo(
    ctx: typer.Context,
    customers: Annotated[int, typer.Option(help="How many customers the retailer has.")] = 2000,
    days: Annotated[int, typer.Option(help="How many days of history.")] = 60,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same world).")] = 7,
    journey_days: Annotated[
        int,
        typer.Option(help="Run the built-in journeys over this many last days (at most half the world; 0: none)."),
    ] = 14,
) -> None:
    """Generate a demo retailer and run it through the collector and the importers."""
    from omniweave.demo.runner import run_demo

    run_demo(settings_of(ctx), customers=customers, days=days, seed=seed, console=console, journey_days=journey_days)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root `app`."""
    app.command()(demo)
