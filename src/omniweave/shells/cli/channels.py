"""CLI commands of the reach channels: `push vapid-keys`, `print batches|flush|deliveries` (docs/channels.md)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer

from omniweave.shells.cli.common import OutputFormat, console, opened
from omniweave.shells.render import emit, grid

push_app = typer.Typer(help="Web push: VAPID keys (docs/channels.md, Web push).", no_args_is_help=True)
print_app = typer.Typer(help="Direct mail: print batches (docs/channels.md, Direct mail).", no_args_is_help=True)


@push_app.command("vapid-keys")
def push_vapid_keys(
    format: Annotated[OutputFormat, typer.Option("--format", help="table (env lines), json or csv.")] = (
        OutputFormat.table
    ),
) -> None:
    """Print a new VAPID key pair: put the private key in the environment, never in omniweave.toml."""
    from omniweave.channels.push.vapid import generate_vapid_keys

    keys = generate_vapid_keys()
    lines = [
        "# the private key goes in the variable [channels.push] vapid_private_key_env names:",
        f"OMNIWEAVE_VAPID_PRIVATE_KEY={keys.private_key}",
        "# the public key (served at GET /v1/push/vapid-public-key; pages subscribe with it):",
        f"# {keys.public_key}",
    ]
    if format == OutputFormat.table:
        typer.echo("\n".join(lines))  # unwrapped: the keys are copied as they are
    else:
        emit(console, format, document=keys.to_dict())


@print_app.command("batches")
def print_batches(
    ctx: typer.Context,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
) -> None:
    """List the print batches: open ones (letters queued) and printed ones with their drop date."""
    from omniweave.channels.print.service import open_print_channel

    with opened(ctx) as rt:
        channel = open_print_channel(rt)
        rows = [
            {"batch": b, "status": "open", "letters": len(channel.queued(b)), "drop_date": "", "pdf": ""}
            for b in channel.open_batches()
        ]
        rows += [
            {"batch": b.batch, "status": "printed", "letters": len(b.letters), "drop_date": b.drop_date, "pdf": b.pdf}
            for b in channel.printed()
        ]
    columns = ("batch", "status", "letters", "drop_date", "pdf")
    view = grid(columns, [[row[c] for c in columns] for row in rows], title="print batches")
    emit(console, format, document=rows, records=rows, columns=columns, views=[view] if rows else ["no batches"])


@print_app.command("flush")
def print_flush(
    ctx: typer.Context,
    batches: Annotated[list[str] | None, typer.Argument(help="Batches to print (default: every open batch).")] = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
) -> None:
    """Write the PDF and the mail-house CSV of batches; their letters are delivered on the drop date."""
    from omniweave.channels.print.service import flush_print_batch, open_print_channel

    with opened(ctx) as rt:
        names = batches or open_print_channel(rt).open_batches()
        done = [flush_print_batch(rt, name) for name in names]
    rows = [
        {"batch": b.batch, "letters": len(b.letters), "drop_date": b.drop_date, "pdf": b.pdf, "csv": b.csv}
        for b in done
    ]
    columns = ("batch", "letters", "drop_date", "pdf", "csv")
    view = grid(columns, [[row[c] for c in columns] for row in rows], title="printed")
    emit(console, format, document=rows, records=rows, columns=columns, views=[view] if rows else ["nothing to print"])


@print_app.command("deliveries")
def print_deliveries_command(
    ctx: typer.Context,
    today: Annotated[
        str | None, typer.Option(help="The day to report up to, YYYY-MM-DD (default: today, UTC).")
    ] = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
) -> None:
    """Report "Letter Delivered" for letters whose drop date has come (run daily; each letter is reported once)."""
    from omniweave.channels.print.service import print_deliveries
    from omniweave.errors import InputError

    with opened(ctx) as rt:
        try:
            day = date.fromisoformat(today) if today else None
        except ValueError:
            raise InputError(f"--today must be YYYY-MM-DD, got {today!r}", field="today") from None
        result = print_deliveries(rt, day)
    line = f"{result.letters} letters in {len(result.batches)} batches due; {result.new_events} new Letter Delivered events"
    emit(console, format, document=result.to_dict(), views=[line])


def register(app: typer.Typer) -> None:
    """Add the `push` and `print` command groups to `app`."""
    app.add_typer(push_app, name="push")
    app.add_typer(print_app, name="print")
