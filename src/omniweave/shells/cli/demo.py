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
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Stop after the report instead of serving the dashboard (for scripts).")
    ] = False,
    port: Annotated[int | None, typer.Option(help="Port of the dashboard (default: the port setting, 8787).")] = None,
) -> None:
    """Generate a demo retailer, run it through the collector and the importers, then serve the dashboard."""
    from omniweave.demo.dashboard import dashboard_users
    from omniweave.demo.runner import run_demo

    settings = settings_of(ctx)
    run_demo(settings, customers=customers, days=days, seed=seed, console=console, journey_days=journey_days)
    if no_serve:
        return
    from omniweave.shells.api.app import serve

    settings = settings.with_overrides(port=port or settings.port)
    users, password = dashboard_users(settings)
    address = f"http://{settings.host}:{settings.port}/app/"
    console.print(f"\ndashboard: {address}", markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"sign in as {users['marketer']} (or {', '.join(e for r, e in users.items() if r != 'marketer')}) "
        f"with the password {password} (kept in {settings.home_path / 'demo' / 'dashboard-password.txt'}); "
        "Ctrl+C stops the server",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    serve(settings)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root `app`."""
    app.command()(demo)
