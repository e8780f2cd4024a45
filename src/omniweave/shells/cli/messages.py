"""CLI commands `omniweave messages list|validate|preview|send` (content: docs/content.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from omniweave.shells.cli.common import OutputFormat, console, err_console, opened, reported, settings_of
from omniweave.shells.render import Grid, emit, grid

if TYPE_CHECKING:
    from omniweave.activate.content.checker import Finding
    from omniweave.activate.service.messages import Preview

messages_app = typer.Typer(
    help="Messages written once, rendered per channel under the brand kit (docs/content.md).", no_args_is_help=True
)


def _findings_lines(findings: list[Finding] | tuple[Finding, ...], title: str = "findings") -> list[Grid | str]:
    """Findings as lines of text (`error sms-segments (sms, body): …`), which wrap instead of splitting a table."""
    lines: list[Grid | str] = [f"{title}:"]
    lines += [f"  {f.severity} {f.rule} ({f.channel}, {f.field or '-'}): {f.message}" for f in findings]
    return lines


@messages_app.command("list")
def messages_list(
    ctx: typer.Context,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
) -> None:
    """List the messages: the built-in library and the project's `messages/` files."""
    from omniweave.activate.service.messages import list_messages

    with reported():
        rows = [m.to_dict() for m in list_messages(settings_of(ctx))]
    records = [{**row, "channels": " ".join(row["channels"])} for row in rows]
    emit(
        console,
        format,
        document=rows,
        records=records,
        columns=("name", "campaign", "class", "channels", "source", "description"),
        views=[
            grid(
                ["name", "class", "channels", "description"],
                [[r["name"], r["class"], r["channels"], r["description"]] for r in records],
            )
        ],
    )


@messages_app.command("validate")
def messages_validate(
    ctx: typer.Context,
    files: Annotated[
        list[Path] | None, typer.Argument(help="Message files (YAML or TOML); default: every message known.")
    ] = None,
    max_sms_segments: Annotated[int, typer.Option(help="The most SMS segments a message may cost.")] = 2,
) -> None:
    """Check messages: the file (every problem at once), then each channel's rendition for a sample person
    under the brand kit. Exit code 2 if any file or rendition has an error."""
    from omniweave.activate.service.messages import load_brand, load_messages, read_message_file, validate_message
    from omniweave.errors import InputError

    settings = settings_of(ctx)
    failed = False
    with reported("brand kit"):
        brand = load_brand(settings)
    messages = []
    if files:
        for path in files:
            try:
                messages.append(read_message_file(path))
            except InputError as exc:
                err_console.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
                failed = True
            except OSError as exc:
                err_console.print(f"{path}: cannot read: {exc}", style="red", markup=False, highlight=False)
                failed = True
    else:
        with reported():
            messages = list(load_messages(settings).values())
    for message in messages:
        validation = validate_message(message, brand, max_sms_segments=max_sms_segments)
        state = "ok" if validation.ok else "errors"
        console.print(f"{message.source}: {state} ({message.name})", markup=False, highlight=False, soft_wrap=True)
        if validation.findings:
            emit(console, "table", document=None, views=_findings_lines(validation.findings, message.name))
        failed = failed or not validation.ok
    if failed:
        raise typer.Exit(2)


def _preview_views(result: Preview, html_out: Path | None) -> list[Grid | str]:
    content = result.rendition.content
    head = [
        ["message", result.message],
        ["person", f"{result.person_id} ({result.found_by})"],
        ["channel", result.channel],
        ["to", result.to or "(no address)"],
        ["sender", result.rendition.sender],
    ]
    if result.channel == "email":
        head += [["subject", content.get("subject", "")], ["preheader", content.get("preheader", "")]]
        if html_out is not None:
            head.append(["html", f"saved to {html_out}"])
    if result.rendition.segments is not None:
        seg = result.rendition.segments
        head.append(["segments", f"{seg.segments} ({seg.encoding}, {seg.characters} characters)"])
    views: list[Grid | str] = [grid(["", ""], head, title="preview")]
    if result.channel == "email":
        views += ["", "--- text part ---", content.get("text", "")]
    elif result.channel in ("sms", "whatsapp") and "body" in content:
        views += ["", content["body"]]
    elif result.channel == "whatsapp":
        views += ["", f"template {content.get('template')} with parameters {content.get('parameters')}"]
    elif result.channel == "push":
        views += ["", content.get("title", ""), content.get("body", ""), content.get("url", "")]
    else:
        views += ["", *content.get("address", []), "", content.get("text", ""), "", f"QR: {content.get('qr_url', '')}"]
    if result.findings:
        views += ["", *_findings_lines(result.findings)]
    else:
        views += ["", "findings: none"]
    views += [f"note: {note}" for note in result.notes]
    return views


@messages_app.command("preview")
def messages_preview(
    ctx: typer.Context,
    message: Annotated[str, typer.Argument(help="The message's name (see `messages list`).")],
    person: Annotated[str, typer.Option("--person", help="A person id or an identifier (email:ann@example.com).")],
    channel: Annotated[str, typer.Option("--channel", help="email, sms, whatsapp, push or print (letter).")],
    html_out: Annotated[
        Path | None, typer.Option("--html-out", help="Write the e-mail's HTML to this file.", dir_okay=False)
    ] = None,
    max_sms_segments: Annotated[int, typer.Option(help="The most SMS segments a message may cost.")] = 2,
    not_personalised: Annotated[
        bool,
        typer.Option(
            "--not-personalised", help="Show it as if the person had said no to personalisation (the fallbacks)."
        ),
    ] = False,
    format: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.table,
) -> None:
    """Show exactly what one person gets from a message on one channel, with the checker's findings (without
    their personalisation consent: with their personal values withheld and the fallbacks, docs/content.md)."""
    from omniweave.activate.service.messages import PreviewRequest, preview

    with opened(ctx) as rt:
        result = preview(rt, PreviewRequest(message, person, channel, max_sms_segments, not_personalised))
    if html_out is not None and result.channel == "email":
        html_out.parent.mkdir(parents=True, exist_ok=True)
        html_out.write_text(result.rendition.content["html"], encoding="utf-8")
    document = result.to_dict()
    emit(
        console,
        format,
        document=document,
        records=[f.to_dict() for f in result.findings],
        views=_preview_views(result, html_out),
    )


@messages_app.command("send")
def messages_send(
    ctx: typer.Context,
    message: Annotated[str, typer.Argument(help="The message's name (see `messages list`).")],
    segment: Annotated[str, typer.Option("--segment", help="The segment whose members get it (as last evaluated).")],
    channel: Annotated[str, typer.Option("--channel", help="email, sms, whatsapp, push or print (letter).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decide and render for each member; send nothing.")
    ] = False,
    fake: Annotated[
        bool, typer.Option("--fake", help="Send through the channels' shipped fake transports (offline).")
    ] = False,
    max_sms_segments: Annotated[int, typer.Option(help="The most SMS segments a message may cost.")] = 2,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
) -> None:
    """Send a message to a segment on one channel: consent, suppression and the checker decide per member;
    each send has the key msg:MESSAGE:SEGMENT:PERSON:CHANNEL, so a second run sends nothing new."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from omniweave.activate.service.messages import SendRequest, send
    from omniweave.privacy.service.audit import cli_actor, record

    request = SendRequest(message, segment, channel, dry_run, max_sms_segments)
    with (
        opened(ctx) as rt,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        ) as bar,
    ):
        detail = {"segment": segment, "channel": channel, "dry_run": dry_run, "fake": fake}
        record(rt, cli_actor(), "message.send", f"message:{message}", detail)
        task = bar.add_task("dry run" if dry_run else "sending", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = send(rt, request, fake=fake, progress=progress)
    document = report.to_dict()
    counts = report.counts()
    title = f"{report.message} to {report.segment} on {report.channel}" + (" (dry run)" if dry_run else "")
    views: list[Grid | str] = [
        grid(["outcome", "members"], sorted(counts.items()), title=f"{title}: {report.members} members"),
        grid(
            ["outcome", "reason", "members"], [[o.outcome, o.reason, o.count] for o in report.outcomes], title="reasons"
        ),
    ]
    emit(console, format, document=document, records=[o.to_dict() for o in report.outcomes], views=views)


def register(app: typer.Typer) -> None:
    """Add the `messages` commands to the root app."""
    app.add_typer(messages_app, name="messages")
