"""CLI commands `omniweave coupons ...` and `omniweave qr make` (registered on the main app by shells/cli/main.py).

coupons pool create NAME (--unique [--length 10 --prefix W --valid-days 30] | --static CODE) [--campaign C]
coupons pool list
coupons issue POOL --person P [--send-key K --channel email --message M] [--out code.png|svg]
coupons issue-bulk POOL --count N [--out codes.csv]
coupons redeem                     redemptions from the event log: mark codes, credit the issuing message
coupons show CODE
qr make URL --campaign C --medium print|tv|packaging|letter (--placement P | --person ID) [--out code.png|svg]
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import typer

from omniweave.shells.cli.common import OutputFormat, console, opened
from omniweave.shells.render import emit, grid

coupons_app = typer.Typer(help="Coupon pools and codes for tills, e-mails and print.", no_args_is_help=True)
pool_app = typer.Typer(help="Coupon pools: static (one code for all) or unique (a code per person).")
coupons_app.add_typer(pool_app, name="pool")
qr_app = typer.Typer(help="QR short links for print, TV, packaging and letters.", no_args_is_help=True)


def _write_images(out: Path, text: str, *, barcode: bool) -> list[Path]:
    """Write the QR code of `text` to `out` and, for a coupon, its Code 128 barcode next to it (`<stem>-barcode`)."""
    from omniweave.activate import codes

    kind = codes.image_format(out.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(codes.qr_image(text, kind))
    written = [out]
    if barcode:
        bars = out.with_name(f"{out.stem}-barcode{out.suffix}")
        bars.write_bytes(codes.barcode_image(text, kind))
        written.append(bars)
    return written


@pool_app.command("create")
def pool_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The pool's name.")],
    unique: Annotated[bool, typer.Option("--unique", help="A code per person (the default).")] = False,
    static: Annotated[str | None, typer.Option("--static", help="One code for everyone (never identity).")] = None,
    length: Annotated[int, typer.Option(help="Random characters per unique code (6 to 40).")] = 10,
    prefix: Annotated[str, typer.Option(help="Characters written before every code (from the code alphabet).")] = "",
    valid_days: Annotated[int, typer.Option(help="Days a code is valid from its issue (0: no expiry).")] = 30,
    campaign: Annotated[str | None, typer.Option(help="The campaign redemptions are credited to.")] = None,
    description: Annotated[str | None, typer.Option(help="What the pool is for.")] = None,
) -> None:
    """Create a coupon pool."""
    from omniweave.activate.coupons import code_space_bits
    from omniweave.activate.service.coupons import create_pool

    if unique and static:
        console.print("give --unique or --static CODE, not both", style="red")
        raise typer.Exit(2)
    with opened(ctx) as rt:
        pool = create_pool(
            rt,
            name,
            kind="static" if static else "unique",
            static_code=static,
            length=length,
            prefix=prefix,
            valid_days=valid_days,
            campaign=campaign,
            description=description,
        )
    if pool.kind == "static":
        console.print(f"static pool {pool.name}: code {pool.static_code} for everyone", markup=False)
    else:
        console.print(
            f"unique pool {pool.name}: {pool.prefix or ''}+{pool.code_length} random characters "
            f"({code_space_bits(pool.code_length):.1f} bits) + 1 check character, valid {pool.valid_days} days",
            markup=False,
        )


@pool_app.command("list")
def pool_list(
    ctx: typer.Context,
    format: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.table,
) -> None:
    """The coupon pools."""
    from omniweave.activate.service.coupons import list_pools

    with opened(ctx) as rt:
        pools = list_pools(rt)
    columns = ["name", "kind", "code", "campaign", "valid_days"]
    records = [
        {
            "name": p.name,
            "kind": p.kind,
            "code": p.static_code or f"{p.prefix or ''}+{p.code_length}",
            "campaign": p.campaign or "",
            "valid_days": p.valid_days,
        }
        for p in pools
    ]
    view = grid(columns, [[str(r[c]) for c in columns] for r in records])
    emit(console, format, document=[p.to_dict() for p in pools], records=records, columns=columns, views=[view])


@coupons_app.command("issue")
def issue(
    ctx: typer.Context,
    pool: Annotated[str, typer.Argument(help="The pool.")],
    person: Annotated[str, typer.Option("--person", help="The person the code is for (person id).")],
    send_key: Annotated[str | None, typer.Option(help="The send's ledger key: the same key, the same code.")] = None,
    channel: Annotated[
        str | None, typer.Option(help="The channel the code goes out on (email, sms, print...).")
    ] = None,
    message: Annotated[str | None, typer.Option(help="The message's name.")] = None,
    campaign: Annotated[str | None, typer.Option(help="The campaign (default: the pool's).")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the QR code here (.png or .svg), and the barcode as <name>-barcode.")
    ] = None,
) -> None:
    """Issue a code from POOL to a person and print it (grouped for reading)."""
    from omniweave.activate.service.coupons import issue as issue_code

    with opened(ctx) as rt:
        coupon = issue_code(
            rt, pool, person_id=person, send_key=send_key, channel=channel, campaign=campaign, message_name=message
        )
        console.print(coupon.display, markup=False, highlight=False)
        if out is not None:
            for path in _write_images(out, coupon.code, barcode=True):
                console.print(f"wrote {path}", markup=False, highlight=False)


@coupons_app.command("issue-bulk")
def issue_bulk(
    ctx: typer.Context,
    pool: Annotated[str, typer.Argument(help="The pool (unique).")],
    count: Annotated[int, typer.Option(help="How many codes.")],
    out: Annotated[Path | None, typer.Option(help="Write the pool's codes to this CSV (code, display).")] = None,
) -> None:
    """Issue COUNT unassigned codes (print runs, packaging); no code is ever issued twice."""
    from rich.progress import Progress

    from omniweave.activate.coupons import format_code
    from omniweave.activate.service.coupons import issue_bulk as bulk
    from omniweave.activate.service.coupons import pool_codes

    with opened(ctx) as rt:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"issuing {count:,} codes", total=count)
            done = bulk(rt, pool, count, progress=lambda n: progress.advance(task, n))
        console.print(
            f"issued {done.issued:,} codes from {pool} in {done.seconds:.2f} s ({done.redrawn} drawn again)",
            markup=False,
        )
        if out is not None:
            with out.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["code", "display"])
                writer.writerows([code, format_code(code)] for code in pool_codes(rt, pool))
            console.print(f"wrote {out}", markup=False, highlight=False)


@coupons_app.command("redeem")
def redeem(ctx: typer.Context) -> None:
    """Process redemptions in the event log (till imports, Coupon Applied, Order Completed with a coupon):
    mark codes redeemed, flag shared ones, and credit the message that issued each (Coupon Redeemed events;
    run `omniweave load` after to see them in attribution)."""
    from omniweave.activate.service.coupons import redeem_from_log

    with opened(ctx) as rt:
        summary = redeem_from_log(rt)
    console.print(summary.describe(), markup=False, highlight=False)


@coupons_app.command("show")
def show(
    ctx: typer.Context,
    code: Annotated[str, typer.Argument(help="The code (any case, spaces or dashes).")],
    format: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.table,
) -> None:
    """What a code is: its pool, recipient, send, channel, campaign, expiry and redemption."""
    from datetime import UTC, datetime

    from omniweave.activate.service.coupons import find

    with opened(ctx) as rt:
        coupon = find(rt, code)
    if coupon is None:
        console.print(f"no issued coupon {code!r}", style="red", markup=False)
        raise typer.Exit(1)
    record = coupon.to_dict()

    def cell(key: str, value: object) -> str:
        if value is None:
            return ""
        if key.endswith("_at"):
            return datetime.fromtimestamp(float(value), UTC).isoformat(timespec="seconds")  # type: ignore[arg-type]
        return str(value)

    view = grid(["field", "value"], [[key, cell(key, value)] for key, value in record.items()])
    emit(console, format, document=record, records=[record], columns=list(record), views=[view])


@qr_app.command("make")
def qr_make(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="The landing URL (http or https).")],
    campaign: Annotated[str, typer.Option(help="utm_campaign.")],
    medium: Annotated[str, typer.Option(help="utm_medium: print, tv, packaging or letter.")],
    placement: Annotated[str | None, typer.Option(help="utm_content: where the code is printed or shown.")] = None,
    person: Annotated[str | None, typer.Option("--person", help="A recipient (person id), for a letter.")] = None,
    send_key: Annotated[str | None, typer.Option(help="The letter's ledger key.")] = None,
    source: Annotated[str | None, typer.Option(help="utm_source (default: the medium).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the QR code here (.png or .svg).")] = None,
) -> None:
    """Make a QR short link (signed, with UTM tags) and print it; the scan lands as a tagged page event."""
    from omniweave.activate.service.qr import qr_link

    with opened(ctx) as rt:
        link = qr_link(rt, url, campaign, medium, placement, person, send_key=send_key, source=source)
        console.print(link.url, markup=False, highlight=False, soft_wrap=True)
        if out is not None:
            for path in _write_images(out, link.url, barcode=False):
                console.print(f"wrote {path}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add the `coupons` and `qr` commands to the root `app`."""
    app.add_typer(coupons_app, name="coupons")
    app.add_typer(qr_app, name="qr")
