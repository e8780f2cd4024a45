"""CLI commands of the collect stage: `serve`, `keys ...`, `import`, `load` and `query`."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from omniweave.shells.cli.common import OutputFormat, console, err_console, settings_of
from omniweave.shells.render import Grid, emit, grid, print_grid

keys_app = typer.Typer(help="Sources and their keys.", no_args_is_help=True)


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Run the collector and REST API (and the loader that moves the inbox into the event log)."""
    from omniweave.shells.api.app import serve as run_server

    settings = settings_of(ctx)
    settings = settings.with_overrides(host=host or settings.host, port=port or settings.port)
    run_server(settings)


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    source: Annotated[str, typer.Option(help="Name of the source (a site, an app, a server).")],
) -> None:
    """Create a source; its write key is the last line of the output."""
    from omniweave.privacy.service.audit import cli_actor, record
    from omniweave.runtime import Runtime

    rt = Runtime(settings_of(ctx))
    source_id, write_key = rt.store.create_source(source)
    record(rt, cli_actor(), "source.create", f"source:{source_id}", {"name": source})
    console.print(f"source {source!r} created (id {source_id}); write key:")
    print(write_key)


@keys_app.command("secret")
def keys_secret(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Who the key is for.")] = "admin",
    scope: Annotated[
        list[str] | None,
        typer.Option(help="What the key may do (repeat): profiles:read, config:manage, journeys:run, privacy:admin."),
    ] = None,
) -> None:
    """Create a secret key for the REST API (every scope unless --scope says); the key is the last line."""
    from omniweave.privacy.roles import KEY_SCOPES
    from omniweave.privacy.service.access import create_api_key
    from omniweave.privacy.service.audit import cli_actor
    from omniweave.runtime import Runtime

    made = create_api_key(Runtime(settings_of(ctx)), name, scope or list(KEY_SCOPES), actor=cli_actor())
    console.print(f"secret key for {name!r} ({', '.join(made.scopes)}):")
    print(made.key)


@keys_app.command("disable")
def keys_disable(ctx: typer.Context, source: Annotated[str, typer.Argument(help="The source's name.")]) -> None:
    """Disable a source: the collector answers its write key with 404 (within a few seconds)."""
    _source_state(ctx, source, enabled=False)


@keys_app.command("enable")
def keys_enable(ctx: typer.Context, source: Annotated[str, typer.Argument(help="The source's name.")]) -> None:
    """Enable a disabled source again."""
    _source_state(ctx, source, enabled=True)


def _source_state(ctx: typer.Context, source: str, *, enabled: bool) -> None:
    from omniweave.privacy.service.access import set_source_enabled
    from omniweave.privacy.service.audit import cli_actor
    from omniweave.runtime import Runtime

    rt = Runtime(settings_of(ctx))
    try:
        set_source_enabled(rt, source, enabled, actor=cli_actor())
    finally:
        rt.close()
    console.print(f"source {source!r} {'enabled' if enabled else 'disabled'}")


@keys_app.command("list")
def keys_list(ctx: typer.Context) -> None:
    """List sources and their write keys."""
    from omniweave.runtime import Runtime

    rows = [[row["name"], row["id"], row["write_key"]] for row in Runtime(settings_of(ctx)).store.list_sources()]
    print_grid(console, grid(["source", "id", "write key"], rows))


@keys_app.command("secrets")
def keys_secrets(ctx: typer.Context) -> None:
    """List the secret keys by prefix and name (a key itself is shown only once, when it is made)."""
    from datetime import UTC, datetime

    from omniweave.runtime import Runtime

    rt = Runtime(settings_of(ctx))
    try:
        from omniweave.privacy.service.access import list_api_keys

        table = Table("prefix", "name", "created (UTC)", "scopes")
        for key in list_api_keys(rt):
            created = datetime.fromtimestamp(key.created_at, UTC).strftime("%Y-%m-%d %H:%M")
            table.add_row(key.prefix, key.name, created, " ".join(key.scopes))
        console.print(table)
    finally:
        rt.close()


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    prefix: Annotated[str, typer.Argument(help="The key's prefix, as `omniweave keys secrets` lists it.")],
) -> None:
    """Delete a secret key: the REST API refuses it from then on."""
    from omniweave.privacy.service.access import NotFound, revoke_api_key
    from omniweave.privacy.service.audit import cli_actor
    from omniweave.runtime import Runtime

    rt = Runtime(settings_of(ctx))
    try:
        revoke_api_key(rt, prefix, actor=cli_actor())
        revoked = True
    except NotFound:
        revoked = False
    finally:
        rt.close()
    if not revoked:
        err_console.print(f"no secret key with prefix {prefix!r} (see `omniweave keys secrets`)")
        raise typer.Exit(2)
    console.print(f"secret key {prefix} revoked")


def import_(
    ctx: typer.Context,
    kind: Annotated[
        str,
        typer.Argument(
            help=(
                "Source kind: customers, till, store_visits, loyalty, coupons, gift_cards, qr_scans,"
                " call_centre, direct_mail, email_export, surveys, ad_spend, stores, products, lift_tests,"
                " promotions,"
                " segment, or a name of your own with --mapping."
            )
        ),
    ],
    file: Annotated[Path, typer.Argument(help="CSV, Parquet or JSON-lines file.", exists=True, dir_okay=False)],
    mapping: Annotated[Path | None, typer.Option(help="A mapping file (TOML) for columns of your own.")] = None,
) -> None:
    """Import an offline file as events (or, for ad spend, stores and products, into their datasets).

    Exits 1 when any row was rejected (the good rows are imported all the same, and a second run
    imports nothing twice), else 0: the same file always gives the same exit code."""
    from omniweave.collect.service import import_file
    from omniweave.runtime import Runtime

    summary = import_file(Runtime(settings_of(ctx)), kind, file, mapping=mapping, console=console)
    for problem in summary.errors[:50]:
        err_console.print(str(problem), style="red", markup=False, highlight=False, soft_wrap=True)
    if len(summary.errors) > 50:
        err_console.print(f"... and {len(summary.errors) - 50} more bad rows")
    console.print(summary.describe())
    if summary.rows_rejected > 0:
        raise typer.Exit(1)


def load(ctx: typer.Context) -> None:
    """Move everything waiting in the inbox into the event log now."""
    from rich.progress import Progress

    from omniweave.collect.loader import load_all
    from omniweave.runtime import Runtime

    rt = Runtime(settings_of(ctx))
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("loading inbox", total=None)
        moved = load_all(rt.store, rt.log, rt.settings.loader_batch_size, progress=lambda n: progress.advance(task, n))
    console.print(f"moved {moved} events into the event log")


def query(
    ctx: typer.Context,
    sql: Annotated[str, typer.Argument(help="SQL over the warehouse tables (events, spend).")],
    format: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.table,
    engine: Annotated[str | None, typer.Option(help="duckdb or spark (default: the engine setting).")] = None,
) -> None:
    """Run SQL over the warehouse and print the result."""
    from omniweave.storage.query import run_query

    settings = settings_of(ctx)
    result = run_query(settings if engine is None else settings.with_overrides(engine=engine), sql)
    rows = result.to_pylist()
    shown: list[Grid | str] = [
        grid(result.column_names, [[_cell(v) for v in row.values()] for row in rows[:QUERY_ROWS_SHOWN]])
    ]
    if len(rows) > QUERY_ROWS_SHOWN:
        shown.append(f"({len(rows)} rows, first {QUERY_ROWS_SHOWN} shown)")
    emit(console, format, document=rows, records=rows, columns=result.column_names, views=shown)


QUERY_ROWS_SHOWN = 1000


def _cell(value: object) -> str:
    if value is None:
        return ""
    return value.isoformat() if isinstance(value, (date, datetime)) else str(value)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root `app`."""
    app.command()(serve)
    app.add_typer(keys_app, name="keys")
    app.command("import")(import_)
    app.command()(load)
    app.command()(query)
