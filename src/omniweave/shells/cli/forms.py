"""CLI commands `omniweave forms ...` (registered on the main app by shells/cli/main.py).

forms list                                   the project's forms with their sign-ups by status
forms validate                               every problem of every form file (exit 1 when there is one)
forms qr FORM --placement poster -o F.png    the QR code that opens the form at a placement (PNG or SVG)
forms expire                                 expire unconfirmed sign-ups past their time (a job: cron it)
forms evidence form:ID                       what a consent given through a form rests on
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from omniweave.shells.cli.common import OutputFormat, console, err_console, opened
from omniweave.shells.render import emit, grid

forms_app = typer.Typer(
    help="Sign-up forms: hosted, embedded, in store; double opt-in (docs/forms.md).", no_args_is_help=True
)


@forms_app.command("list")
def list_forms(
    ctx: typer.Context,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, csv or json.")] = OutputFormat.table,
) -> None:
    """The project's forms (forms/*.yaml) with their sign-ups: pending, confirmed, expired."""
    from omniweave.forms.service import list_forms as listed

    with opened(ctx) as runtime:
        forms = listed(runtime)
    records = [
        {
            "form": f.name,
            "title": f.title,
            "purposes": ",".join(f.purposes),
            "pending": f.pending,
            "confirmed": f.confirmed,
            "expired": f.expired,
        }
        for f in forms
    ]
    columns = ["form", "title", "purposes", "pending", "confirmed", "expired"]
    views: list[object] = [grid(columns, [[r[c] for c in columns] for r in records], title="forms")]
    if not forms:
        views = ["no forms yet: put one in forms/NAME.yaml (docs/forms.md)"]
    emit(console, format, document=[f.to_dict() for f in forms], records=records, columns=columns, views=views)  # type: ignore[arg-type]


@forms_app.command("validate")
def validate(ctx: typer.Context) -> None:
    """Check every form file: the definition, then what it needs from the project (coupon pool, brand
    file, an enabled channel for each confirmation). Every problem is printed; exit 1 when there is one."""
    from omniweave.forms.service import check_files, forms_folder

    with opened(ctx) as runtime:
        checks = check_files(runtime)
        folder = forms_folder(runtime.settings)
    if not checks:
        console.print(f"no form files in {folder}", markup=False, highlight=False)
        return
    bad = 0
    for check in checks:
        if check.valid:
            console.print(f"ok       {check.name}  ({check.file})", markup=False, highlight=False)
            continue
        bad += 1
        err_console.print(f"problems {check.name}  ({check.file})", style="red", markup=False, highlight=False)
        for path, message in check.problems:
            err_console.print(f"  {path or '(top)'}: {message}", markup=False, highlight=False, soft_wrap=True)
    if bad:
        raise typer.Exit(1)


@forms_app.command("qr")
def qr(
    ctx: typer.Context,
    form: Annotated[str, typer.Argument(help="The form's name.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Where to write the code: a .png or .svg file.")],
    placement: Annotated[str, typer.Option(help="poster, receipt, shelf, tv, kiosk, web or embed.")] = "poster",
) -> None:
    """The QR code that opens FORM with its placement recorded (the URL is printed too)."""
    from omniweave.forms.service import form_qr

    with opened(ctx) as runtime:
        code = form_qr(runtime, form, placement, out.suffix.lstrip(".") or "png")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(code.image)
    console.print(f"wrote {out} ({code.format}, {len(code.image):,} bytes): {code.url}", markup=False, highlight=False)


@forms_app.command("expire")
def expire(ctx: typer.Context) -> None:
    """Expire every unconfirmed sign-up past its form's confirm_hours (their e-mail, phone and IP are cleared)."""
    from omniweave.forms.service import expire as run

    with opened(ctx) as runtime:
        count = run(runtime)
    console.print(f"expired {count:,} unconfirmed sign-up(s)", markup=False, highlight=False)


@forms_app.command("evidence")
def evidence(
    ctx: typer.Context,
    reference: Annotated[str, typer.Argument(help="The consent statement's reference (form:ID).")],
    format: Annotated[OutputFormat, typer.Option("--format", help="table, csv or json.")] = OutputFormat.table,
) -> None:
    """The words, times, IPs and confirmation a consent given through a form rests on."""
    from omniweave.forms.service import evidence as of

    with opened(ctx) as runtime:
        found = of(runtime, reference)
    record = found.to_dict()
    rows = [[k, v] for k, v in record.items() if k != "purposes"]
    rows += [[f"purpose {p['name']}", f"{p['wording']} (confirm: {p['confirm']})"] for p in found.purposes]
    emit(console, format, document=record, records=[record], views=[grid(["field", "value"], rows)])


def register(app: typer.Typer) -> None:
    """Add the `forms` commands to the root `app`."""
    app.add_typer(forms_app, name="forms")
