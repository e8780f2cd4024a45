"""CLI commands `omniweave privacy ...` (docs/privacy.md): data-subject requests, consent, retention.

privacy export IDENTIFIER [--out FILE.zip|FILE.json]   everything about the person, as a bundle
privacy delete IDENTIFIER --yes                        the person removed everywhere, with receipts
privacy suppress IDENTIFIER                            the person's events refused at ingest from now on
privacy unsuppress IDENTIFIER                          lift a suppression
privacy retention                                      remove what is older than [privacy] retention_days
privacy requests [ID]                                  the requests, or one with its receipts
privacy resume                                         finish requests a crash or restart interrupted
privacy run-jobs                                       run the requests waiting as jobs (made via the API)
privacy consent IDENTIFIER [--set PURPOSE=yes|no]      the person's consent history; record a statement
privacy consent-sync                                   record the statements of the log and the channels

IDENTIFIER is `kind:value` (email:ann@example.com), a bare value, or a person id; a request acts on the
resolved person: every identifier of theirs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from omniweave.shells.cli.common import OutputFormat, console, err_console, opened
from omniweave.shells.render import emit, grid

if TYPE_CHECKING:
    from omniweave.privacy.requests import RequestResult

privacy_app = typer.Typer(
    help="Consent per purpose, data-subject requests (export, delete, suppress), retention.", no_args_is_help=True
)

Identifier = Annotated[str, typer.Argument(help="kind:value (email:ann@example.com), a bare value or a person id.")]
Format = Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")]


def _when(at: float | None) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S") if at else "-"


def _show(result: RequestResult, format: OutputFormat) -> None:
    doc = result.to_dict()
    doc.pop("bundle", None)
    head = f"{result.kind} {result.id}: {result.status} (subject {result.subject}, person {result.person_id or '-'})"
    emit(
        console,
        format,
        document=doc,
        records=[{"request": result.id, **r.to_dict()} for r in result.receipts],
        columns=("request", "target", "action", "count", "detail", "at"),
        views=[
            head,
            grid(
                ["target", "action", "count", "at"],
                [[r.target, r.action, f"{r.count:,}", _when(r.at)] for r in result.receipts],
                title="receipts",
            ),
        ],
    )


def _submit(ctx: typer.Context, kind: str, identifier: str, format: OutputFormat) -> RequestResult:
    from omniweave.privacy.service.requests import submit

    with opened(ctx) as runtime:
        result = submit(runtime, kind, identifier, requested_by="cli")
    _show(result, format)
    return result


@privacy_app.command("export")
def privacy_export(
    ctx: typer.Context,
    identifier: Identifier,
    out: Annotated[Path | None, typer.Option(help="The bundle: FILE.zip (default) or FILE.json.")] = None,
    format: Format = OutputFormat.table,
) -> None:
    """Export everything omniweave holds about the person: identifiers, profile, consent history, events,
    messages, coupons, segment memberships."""
    from omniweave.privacy.service.requests import submit, write_bundle

    with opened(ctx) as runtime:
        result = submit(runtime, "export", identifier, requested_by="cli")
    path = write_bundle(result.bundle or {}, out or Path(f"privacy-export-{result.id}.zip"))
    _show(result, format)
    err_console.print(f"bundle written to {path}", markup=False, highlight=False)


@privacy_app.command("delete")
def privacy_delete(
    ctx: typer.Context,
    identifier: Identifier,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: the deletion cannot be undone.")] = False,
    format: Format = OutputFormat.table,
) -> None:
    """Delete the person everywhere (event log, derived datasets, store, audience files, logs); their
    identifiers are refused at ingest from then on. Prints a receipt per target."""
    if not yes:
        err_console.print("a deletion cannot be undone: add --yes to go ahead", style="red")
        raise typer.Exit(2)
    _submit(ctx, "delete", identifier, format)


@privacy_app.command("suppress")
def privacy_suppress(ctx: typer.Context, identifier: Identifier, format: Format = OutputFormat.table) -> None:
    """Refuse the person's events at ingest (every collector process, within the blocklist refresh time)."""
    _submit(ctx, "suppress", identifier, format)


@privacy_app.command("unsuppress")
def privacy_unsuppress(ctx: typer.Context, identifier: Identifier, format: Format = OutputFormat.table) -> None:
    """Accept the person's events again."""
    _submit(ctx, "unsuppress", identifier, format)


@privacy_app.command("retention")
def privacy_retention(ctx: typer.Context, format: Format = OutputFormat.table) -> None:
    """Remove what each dataset of the privacy section's retention_days holds from before its number of days."""
    from omniweave.privacy.service.requests import submit

    with opened(ctx) as runtime:
        if not runtime.settings.privacy.retention_days:
            err_console.print("no [privacy] retention_days configured: nothing to remove", markup=False)
        result = submit(runtime, "retention", requested_by="cli")
    _show(result, format)


@privacy_app.command("requests")
def privacy_requests(
    ctx: typer.Context,
    request_id: Annotated[str | None, typer.Argument(help="A request id: show it with its receipts.")] = None,
    format: Format = OutputFormat.table,
) -> None:
    """List the data-subject requests (newest first), or show one with its receipts."""
    from omniweave.privacy.service.requests import get, list_requests

    with opened(ctx) as runtime:
        if request_id:
            _show(get(runtime, request_id), format)
            return
        found = list_requests(runtime)
    emit(
        console,
        format,
        document=[r.to_dict() for r in found],
        records=[{k: v for k, v in r.to_dict().items() if k != "receipts"} for r in found],
        views=[
            grid(
                ["id", "kind", "status", "subject", "created", "finished"],
                [[r.id, r.kind, r.status, r.subject, _when(r.created_at), _when(r.finished_at)] for r in found],
            )
        ],
    )


@privacy_app.command("resume")
def privacy_resume(ctx: typer.Context, format: Format = OutputFormat.table) -> None:
    """Finish every request left pending, running (interrupted) or failed."""
    from omniweave.privacy.service.requests import resume_pending

    with opened(ctx) as runtime:
        for result in resume_pending(runtime):
            _show(result, format)


@privacy_app.command("run-jobs")
def privacy_run_jobs(ctx: typer.Context, format: Format = OutputFormat.table) -> None:
    """Run the requests waiting as jobs (made through the API while no server ran them), and any a crash
    left running; the server's worker does the same at its start."""
    from omniweave.privacy.service.requests import run_jobs

    with opened(ctx) as runtime:
        ended = run_jobs(runtime, interrupted=True)
        for result in ended:
            _show(result, format)
        if not ended:
            err_console.print("no request was waiting", markup=False)


@privacy_app.command("consent")
def privacy_consent(
    ctx: typer.Context,
    identifier: Identifier,
    set_: Annotated[
        str | None, typer.Option("--set", help="Record a statement: PURPOSE=yes or PURPOSE=no (e.g. email=no).")
    ] = None,
    format: Format = OutputFormat.table,
) -> None:
    """The person's consent: the latest statement per purpose and the history (source, time)."""
    from omniweave.errors import InputError
    from omniweave.privacy.service.consent import consent_of, record_consent

    with opened(ctx) as runtime:
        if set_:
            purpose, _, said = set_.partition("=")
            if said.lower() not in ("yes", "no", "true", "false"):
                raise InputError(f"--set {set_!r}: expected PURPOSE=yes or PURPOSE=no", field="set")
            view = record_consent(runtime, identifier, purpose.strip(), said.lower() in ("yes", "true"))
        else:
            view = consent_of(runtime, identifier)
    doc = view.to_dict()
    emit(
        console,
        format,
        document=doc,
        records=doc["history"],
        views=[
            grid(["purpose", "consent"], [[p, "yes" if v else "no"] for p, v in sorted(view.current.items())]),
            grid(
                ["stated", "purpose", "consent", "source"],
                [[_when(s.stated_at), s.purpose, "yes" if s.granted else "no", s.source] for s in view.history],
                title="history",
            ),
        ],
    )


@privacy_app.command("consent-sync")
def privacy_consent_sync(ctx: typer.Context, format: Format = OutputFormat.table) -> None:
    """Record the consent statements of the event log and the channels' suppression list not recorded yet."""
    from omniweave.privacy.service.consent import sync_consent

    with opened(ctx) as runtime:
        done = sync_consent(runtime)
    emit(
        console,
        format,
        document=done.to_dict(),
        views=[
            f"{done.recorded:,} new statements from {done.events_read:,} events and {done.suppressions_read:,} suppressions"
        ],
    )


def register(app: typer.Typer) -> None:
    app.add_typer(privacy_app, name="privacy")
