"""CLI commands of the profiles stage: `profiles build`, `profile show`, `recommendations build`, `clv fit`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from omniweave.shells.cli.common import OutputFormat, console, err_console, opened, reported, settings_of
from omniweave.shells.render import Grid, emit, grid

profiles_app = typer.Typer(help="Unified profiles: one row per person.", no_args_is_help=True)
profile_app = typer.Typer(help="One person's profile.", no_args_is_help=True)
recommendations_app = typer.Typer(help="Next-product recommendations from co-purchases.", no_args_is_help=True)
clv_app = typer.Typer(help="Customer lifetime value: BG/NBD and Gamma-Gamma (docs/clv.md).", no_args_is_help=True)


@profiles_app.command("build")
def profiles_build(
    ctx: typer.Context,
    engine: Annotated[str | None, typer.Option(help="duckdb or spark (default: the engine setting).")] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Profile everyone again, even when only some persons have new events.")
    ] = False,
) -> None:
    """Rebuild the `profiles` table from the event log and the resolved identities.

    After a build, the next one profiles again only the persons with new events or identifiers (the daily
    increment, docs/profiles.md) when it can; `--full` profiles everyone."""
    from omniweave.profiles.service.build import build_profiles
    from omniweave.runtime import Runtime

    settings = settings_of(ctx)
    rt = Runtime(settings if engine is None else settings.with_overrides(engine=engine))
    try:
        with console.status("building profiles"):
            summary = build_profiles(rt, full=full)
        how = f"; {summary.reprofiled:,} profiled again (increment)" if summary.incremental else ""
        console.print(
            f"{summary.persons:,} profiles ({summary.buyers:,} buyers) from {summary.events:,} events "
            f"as of {summary.now:%Y-%m-%d %H:%M} UTC, on {summary.engine}{how}"
        )
    finally:
        rt.close()


@profile_app.command("show")
def profile_show(
    ctx: typer.Context,
    ref: Annotated[
        str, typer.Argument(help="A person id or any identifier: email:ann@example.com, a phone, a card...")
    ],
    limit: Annotated[int, typer.Option(help="How many of the latest events to show.")] = 20,
    format: Annotated[
        OutputFormat, typer.Option("--format", help="table, json or csv (the traits).")
    ] = OutputFormat.table,
) -> None:
    """Print a person's profile and cross-channel timeline."""
    from omniweave.errors import InputError
    from omniweave.profiles.service.lookup import find_person, person_view
    from omniweave.runtime import Runtime

    rt = Runtime(settings_of(ctx))
    try:
        try:
            found = find_person(rt, ref)
        except InputError as exc:
            err_console.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        if found is None:
            err_console.print(f"nobody has the identifier {ref!r}", style="red", markup=False, highlight=False)
            raise typer.Exit(1)
        view = person_view(rt, found[0], found[1], limit=limit)
    finally:
        rt.close()
    document = view.to_dict()
    traits = {k: v for k, v in (document["profile"] or {}).items() if v not in (None, [], {}, "")}
    views: list[Grid | str] = [f"{view.person_id} (found by {view.found_by})"]
    if view.profile is None:
        views.append("no profile row yet: run `omniweave profiles build`")
    else:
        views.append(grid(["trait", "value"], [[k, _cell(v)[:120]] for k, v in traits.items()], title="profile"))
    views.append(
        grid(
            ["when", "channel", "type", "event", "source"],
            [[_cell(e["timestamp"]), e["channel"], e["type"], e["event"], e["source"]] for e in document["timeline"]],
            title=f"latest {len(view.timeline)} events",
            keys=1,
        )
    )
    emit(
        console,
        format,
        document=document,
        records=[
            {"trait": "person_id", "value": view.person_id},
            *({"trait": k, "value": _cell(v)} for k, v in traits.items()),
        ],
        columns=("trait", "value"),
        views=views,
    )


def _cell(value: object) -> str:
    """A JSON-able profile value as one cell: text as is, anything else as compact JSON."""
    import orjson

    return value if isinstance(value, str) else orjson.dumps(value).decode()


@recommendations_app.command("build")
def recommendations_build(
    ctx: typer.Context,
    engine: Annotated[str | None, typer.Option(help="duckdb or spark (default: the engine setting).")] = None,
) -> None:
    """Rebuild the `recommendations` table (item-to-item co-purchase, online and in store); profiles pick it up."""
    from omniweave.profiles.service.recommendations import build_recommendations

    with opened(ctx, engine) as rt:
        summary = build_recommendations(rt)
    console.print(
        f"recommendations for {summary.persons:,} persons over {summary.products:,} products; "
        "run `omniweave profiles build` to add them to the profiles"
    )


@clv_app.command("fit")
def clv_fit(
    transactions: Annotated[Path, typer.Option(help="Transactions, one row each: a CSV with a header, or Parquet.")],
    customer_col: Annotated[str, typer.Option(help="Column of the customer id.")],
    date_col: Annotated[str, typer.Option(help="Column of the purchase date (ISO 8601, e.g. 2024-03-01).")],
    value_col: Annotated[
        str | None, typer.Option(help="Column of the purchase value; without it, BG/NBD only.")
    ] = None,
    observation_end: Annotated[
        str | None, typer.Option(help="Last day observed (default: the last purchase's).")
    ] = None,
    time_unit: Annotated[str, typer.Option(help="days or weeks: the unit of recency, T and alpha.")] = "days",
    format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
) -> None:
    """Fit BG/NBD (purchase frequency) and Gamma-Gamma (spend) on a transactions file."""
    from omniweave.profiles.service.clv import ClvFitRequest, fit_clv

    request = ClvFitRequest(
        transactions=transactions,
        customer_col=customer_col,
        date_col=date_col,
        value_col=value_col,
        observation_end=observation_end,
        time_unit=time_unit,
    )
    with reported(str(transactions)):
        fit = fit_clv(request)
    table = grid(
        ["model", "parameter", "value"],
        [
            [
                r["model"],
                r["parameter"],
                f"{r['value']:,.6g}" if r["parameter"] != "log_likelihood" else f"{r['value']:,.2f}",
            ]
            for r in fit.records()
        ],
        title=f"{fit.customers:,} customers, {fit.repeat_customers:,} with repeat purchases, time in {fit.time_unit}, "
        f"observed to {fit.observation_end}",
        keys=2,
    )
    emit(
        console,
        format,
        document=fit.to_dict(),
        records=fit.records(),
        columns=("model", "parameter", "value"),
        views=[table],
    )
    if not fit.converged:
        err_console.print("warning: the optimiser did not converge; the parameters may be unreliable", style="yellow")
    if not fit.dropout_identified and fit.dropout is not None:
        err_console.print(
            f"warning: {fit.dropout['reason']}; P(alive) is not known from this history, and predictions "
            "beyond it assume whatever dropout the fit happened to land on",
            style="yellow",
            markup=False,
        )


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root `app`."""
    app.add_typer(profiles_app, name="profiles")
    app.add_typer(profile_app, name="profile")
    app.add_typer(clv_app, name="clv")
    app.add_typer(recommendations_app, name="recommendations")
