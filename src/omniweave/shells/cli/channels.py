"""CLI commands of the channels: `sends list|replay|work` (the ledger, dead letters, retries), `push vapid-keys`,
`print batches|flush|deliveries` (docs/channels.md)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer

from omniweave.shells.cli.common import OutputFormat, console, opened, reported
from omniweave.shells.render import emit, grid

push_app = typer.Typer(help="Web push: VAPID keys (docs/channels.md, Web push).", no_args_is_help=True)
print_app = typer.Typer(help="Direct mail: print batches (docs/channels.md, Direct mail).", no_args_is_help=True)
sends_app = typer.Typer(
    help="The send ledger: what was sent, dead letters, replay, retries (docs/channels.md).", no_args_is_help=True
)


@sends_app.command("list")
def sends_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="only this status (dead: the dead-letter list).")] = None,
    limit: Annotated[int, typer.Option(help="rows to show (the newest).")] = 50,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
) -> None:
    """Sends per status, and the latest rows (of one status)."""
    from omniweave.channels.service import list_sends

    with reported("sends list"), opened(ctx) as rt:
        report = list_sends(rt, status=status, limit=limit)
    counts = ", ".join(f"{k} {v:,}" for k, v in sorted(report.counts.items())) or "no sends yet"
    columns = ("key", "channel", "to_address", "status", "attempts", "reason")
    rows = [{c: r.get(c) for c in columns} for r in report.rows]
    view = grid(columns, [[row[c] for c in columns] for row in rows], title="sends")
    emit(
        console,
        format,
        document=report.to_dict(),
        records=rows,
        columns=columns,
        views=[counts, view] if rows else [counts],
    )


@sends_app.command("replay")
def sends_replay(
    ctx: typer.Context,
    keys: Annotated[list[str] | None, typer.Argument(help="send keys (default: every dead send).")] = None,
    ambiguous: Annotated[bool, typer.Option("--ambiguous", help="also sends whose outcome is unknown.")] = False,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
) -> None:
    """Put dead sends back to pending after a fix and attempt them once now."""
    from omniweave.channels.service import replay_sends

    with reported("sends replay"), opened(ctx) as rt:
        result = replay_sends(rt, keys, include_ambiguous=ambiguous)
    line = f"{result.requeued} sends put back; {result.attempted} attempted: " + (
        ", ".join(f"{k} {v}" for k, v in sorted(result.statuses.items())) or "nothing"
    )
    emit(console, format, document=result.to_dict(), views=[line])


@sends_app.command("work")
def sends_work(
    ctx: typer.Context,
    wait: Annotated[float, typer.Option(help="keep retrying for up to this many seconds while retries wait.")] = 0.0,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
) -> None:
    """Attempt the sends whose time has come: new ones and retries after a transient failure."""
    from omniweave.channels.service import work_sends

    with reported("sends work"), opened(ctx) as rt:
        result = work_sends(rt, wait=wait)
    line = f"{result.attempted} attempted: " + (
        ", ".join(f"{k} {v}" for k, v in sorted(result.statuses.items())) or "nothing was due"
    )
    emit(console, format, document=result.to_dict(), views=[line])


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
    """Add the `sends`, `push` and `print` command groups to `app`."""
    app.add_typer(sends_app, name="sends")
    app.add_typer(push_app, name="push")
    app.add_typer(print_app, name="print")
