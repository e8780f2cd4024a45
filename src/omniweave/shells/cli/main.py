"""The `omniweave` command line. Thin: builds Settings once, calls the service layer, prints."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from omniweave.errors import OmniweaveError
from omniweave.settings import Settings, load_settings

if TYPE_CHECKING:
    from omniweave.runtime import Runtime

app = typer.Typer(help="omniweave: omnichannel marketing platform.", no_args_is_help=True, add_completion=False)
keys_app = typer.Typer(help="Sources and their keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
profiles_app = typer.Typer(help="Unified profiles: one row per person.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")
profile_app = typer.Typer(help="One person's profile.", no_args_is_help=True)
app.add_typer(profile_app, name="profile")
identity_app = typer.Typer(help="Look into and correct the identity graph.", no_args_is_help=True)
app.add_typer(identity_app, name="identity")
console = Console()
err_console = Console(stderr=True)


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj  # type: ignore[no-any-return]


@contextlib.contextmanager
def _opened(ctx: typer.Context) -> Iterator[Runtime]:
    """A runtime for one command, closed after it; bad input is printed and exits with code 2."""
    from omniweave.errors import InputError
    from omniweave.runtime import Runtime

    rt = Runtime(_settings(ctx))
    try:
        yield rt
    except InputError as exc:
        err_console.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    finally:
        rt.close()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(help="Path to omniweave.toml.")] = None,
    home: Annotated[Path | None, typer.Option(help="Home folder (default $OMNIWEAVE_HOME or ./.omniweave).")] = None,
) -> None:
    settings = load_settings(config_file=config)
    if home is not None:
        settings = settings.with_overrides(home=str(home))
    ctx.obj = settings


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Run the collector and REST API (and the loader that moves the inbox into the event log)."""
    from omniweave.shells.api.app import serve as run_server

    settings = _settings(ctx)
    settings = settings.with_overrides(host=host or settings.host, port=port or settings.port)
    run_server(settings)


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    source: Annotated[str, typer.Option(help="Name of the source (a site, an app, a server).")],
) -> None:
    """Create a source; its write key is the last line of the output."""
    from omniweave.runtime import Runtime

    rt = Runtime(_settings(ctx))
    source_id, write_key = rt.store.create_source(source)
    console.print(f"source {source!r} created (id {source_id}); write key:")
    print(write_key)


@keys_app.command("secret")
def keys_secret(ctx: typer.Context, name: Annotated[str, typer.Option(help="Who the key is for.")] = "admin") -> None:
    """Create a secret key for the REST API; the key is the last line of the output."""
    from omniweave.runtime import Runtime

    key = Runtime(_settings(ctx)).store.create_secret_key(name)
    console.print(f"secret key for {name!r}:")
    print(key)


@keys_app.command("list")
def keys_list(ctx: typer.Context) -> None:
    """List sources and their write keys."""
    from omniweave.runtime import Runtime

    table = Table("source", "id", "write key")
    for row in Runtime(_settings(ctx)).store.list_sources():
        table.add_row(str(row["name"]), str(row["id"]), str(row["write_key"]))
    console.print(table)


@app.command("import")
def import_(
    ctx: typer.Context,
    kind: Annotated[
        str,
        typer.Argument(
            help=(
                "Source kind: customers, till, store_visits, loyalty, coupons, qr_scans, call_centre,"
                " direct_mail, email_export, ad_spend, segment, or custom with --mapping."
            )
        ),
    ],
    file: Annotated[Path, typer.Argument(help="CSV, Parquet or JSON-lines file.", exists=True, dir_okay=False)],
    mapping: Annotated[Path | None, typer.Option(help="A mapping file (TOML) for columns of your own.")] = None,
) -> None:
    """Import an offline file as events (or, for ad spend, into the spend dataset)."""
    from omniweave.collect.service import import_file
    from omniweave.runtime import Runtime

    summary = import_file(Runtime(_settings(ctx)), kind, file, mapping=mapping, console=console)
    for problem in summary.errors[:50]:
        err_console.print(f"[red]{problem}[/red]")
    if len(summary.errors) > 50:
        err_console.print(f"... and {len(summary.errors) - 50} more bad rows")
    console.print(summary.describe())
    if summary.rows_imported == 0 and summary.rows_rejected > 0:
        raise typer.Exit(1)


@app.command()
def load(ctx: typer.Context) -> None:
    """Move everything waiting in the inbox into the event log now."""
    from rich.progress import Progress

    from omniweave.collect.loader import load_all
    from omniweave.runtime import Runtime

    rt = Runtime(_settings(ctx))
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("loading inbox", total=None)
        moved = load_all(rt.store, rt.log, rt.settings.loader_batch_size, progress=lambda n: progress.advance(task, n))
    console.print(f"moved {moved} events into the event log")


@app.command()
def demo(
    ctx: typer.Context,
    customers: Annotated[int, typer.Option(help="How many customers the retailer has.")] = 2000,
    days: Annotated[int, typer.Option(help="How many days of history.")] = 60,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same world).")] = 7,
) -> None:
    """Generate a demo retailer and run it through the collector and the importers."""
    from omniweave.demo.runner import run_demo

    run_demo(_settings(ctx), customers=customers, days=days, seed=seed, console=console)


@app.command()
def resolve(
    ctx: typer.Context,
    engine: Annotated[str, typer.Option(help="duckdb or spark: the engine that reads the events.")] = "duckdb",
    probabilistic: Annotated[bool, typer.Option(help="Also link records by the Fellegi-Sunter model.")] = True,
    threshold: Annotated[
        float | None,
        typer.Option(min=0.5, max=1.0, help="Match probability a probabilistic link needs (default 0.95)."),
    ] = None,
) -> None:
    """Stitch the identifiers of new events into persons and rewrite the `identities` table."""
    from omniweave.identity.service.resolve import evaluate_against_ground_truth
    from omniweave.identity.service.resolve import resolve as resolve_identities
    from omniweave.runtime import Runtime

    rt = Runtime(_settings(ctx))
    try:
        options = {} if threshold is None else {"threshold": threshold}
        resolve_identities(rt, console=console, engine=engine, probabilistic=probabilistic, **options)
        demo_folder = rt.settings.home_path / "demo"
        if (demo_folder / "ground_truth" / "identities.csv").is_file():
            console.print(evaluate_against_ground_truth(rt, demo_folder).describe())
    finally:
        rt.close()


@profiles_app.command("build")
def profiles_build(
    ctx: typer.Context,
    engine: Annotated[str, typer.Option(help="duckdb or spark.")] = "duckdb",
) -> None:
    """Rebuild the `profiles` table from the event log and the resolved identities."""
    from omniweave.profiles.service.build import build_profiles
    from omniweave.runtime import Runtime

    rt = Runtime(_settings(ctx))
    try:
        with console.status("building profiles"):
            summary = build_profiles(rt, engine=engine)
        console.print(
            f"{summary.persons:,} profiles ({summary.buyers:,} buyers) from {summary.events:,} events "
            f"as of {summary.now:%Y-%m-%d %H:%M} UTC, on {summary.engine}"
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
    format: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.table,
) -> None:
    """Print a person's profile and cross-channel timeline."""
    import orjson
    from rich.table import Table

    from omniweave.errors import InputError
    from omniweave.profiles.service.lookup import find_person, jsonable, person_view, view_as_dict
    from omniweave.runtime import Runtime

    rt = Runtime(_settings(ctx))
    try:
        try:
            found = find_person(rt, ref)
        except InputError as exc:
            err_console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
        if found is None:
            err_console.print(f"[red]nobody has the identifier {ref!r}[/red]")
            raise typer.Exit(1)
        view = person_view(rt, found[0], found[1], limit=limit)
    finally:
        rt.close()
    if format is OutputFormat.json:
        console.out(orjson.dumps(view_as_dict(view), option=orjson.OPT_INDENT_2).decode())
        return
    console.print(f"[bold]{view.person_id}[/bold] (found by {view.found_by})")
    if view.profile is None:
        console.print("no profile row yet: run `omniweave profiles build`")
    else:
        fields = Table("trait", "value", title="profile")
        for key, value in view.profile.items():
            if value not in (None, [], {}, ""):
                fields.add_row(key, str(jsonable(value))[:120])
        console.print(fields)
    timeline = Table("when", "channel", "type", "event", "source", title=f"latest {len(view.timeline)} events")
    for event in view.timeline:
        timeline.add_row(
            str(jsonable(event["timestamp"])),
            event["channel"] or "",
            event["type"] or "",
            event["event"] or "",
            event["source"] or "",
        )
    console.print(timeline)


def _ident(ident: tuple[str, str]) -> str:
    return f"{ident[0]}:{ident[1]}"


@identity_app.command("explain")
def identity_explain(
    ctx: typer.Context,
    identifier: Annotated[str, typer.Argument(help="kind:value, e.g. email:ann@example.com.")],
    other: Annotated[
        str | None, typer.Argument(help="A second kind:value: show the chain of links between them.")
    ] = None,
) -> None:
    """Why identifiers are one person: the chain between two, or one identifier's person and its merges."""
    from omniweave.identity.service.operations import explain_identifier, explain_link
    from omniweave.runtime import Runtime

    rt = Runtime(_settings(ctx))
    try:
        if other is not None:
            node, chain = explain_link(rt, identifier, other)
            if not chain:
                console.print(f"{identifier} and {other} are the same identifier")
                return
            console.print(f"{len(chain)} link(s) from {identifier} to {other}:", markup=False)
            console.print(f"  {_ident(node)}", markup=False)
            for link in chain:
                nxt = link.b if link.a == node else link.a
                console.print(f"    → event {link.message_id} at {link.timestamp}, rule: {link.rule}", markup=False)
                console.print(f"  {_ident(nxt)}", markup=False)
                node = nxt
            return
        found = explain_identifier(rt, identifier)
    finally:
        rt.close()
    console.print(f"[bold]{_ident(found.identifier)}[/bold] is person [bold]{found.person_id}[/bold]")
    ids = Table("kind", "values", title="identifiers")
    for kind, values in found.identifiers.items():
        ids.add_row(kind, ", ".join(values))
    console.print(ids)
    log = Table("#", "identifier", "linked to", "event", "when", "rule", "merged", title="links that built the person")
    for n, link in enumerate(found.links, 1):
        log.add_row(
            str(n),
            _ident(link.a),
            _ident(link.b),
            link.message_id,
            link.timestamp,
            link.rule,
            f"{link.merged} → {link.survivor}" if link.merged else "",
        )
    console.print(log)


@identity_app.command("split")
def identity_split(
    ctx: typer.Context,
    person: Annotated[str, typer.Argument(help="The person id (an old, merged id works too).")],
    identifier: Annotated[str, typer.Option(help="kind:value that does not belong to the person.")],
) -> None:
    """Undo a wrong link: the identifier leaves the person, and every later `resolve` keeps it apart."""
    from omniweave.identity.service.operations import split_identifier
    from omniweave.runtime import Runtime

    rt = Runtime(_settings(ctx))
    try:
        outcome = split_identifier(rt, person, identifier)
    finally:
        rt.close()
    split = outcome.split
    console.print(
        f"split {_ident(split.identifier)} from person {split.person_id} "
        f"(kept apart from {_ident(split.anchor)} in every later resolve)",
        markup=False,
    )
    for title, (pid, ids) in (("kept", outcome.kept), ("split off", outcome.split_off)):
        table = Table("kind", "values", title=f"{title}: {pid}")
        for kind, values in ids.items():
            table.add_row(kind, ", ".join(values))
        console.print(table)


@app.command()
def match(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A customer file (CSV or Parquet): a CRM or loyalty export, say.")],
    output: Annotated[Path, typer.Option(help="Where to write the rows with cluster_id and match_probability (CSV).")],
    threshold: Annotated[
        float, typer.Option(help="Match probability above which two rows are the same person.")
    ] = 0.95,
    id_column: Annotated[str | None, typer.Option(help="The file's own record id column, if it has one.")] = None,
) -> None:
    """Find the duplicates in a customer file with a probabilistic (Fellegi-Sunter) model."""
    from omniweave.identity.service.matching import match_file

    settings = _settings(ctx)
    with console.status(f"matching {file.name}"):
        summary = match_file(
            file, output, threshold=threshold, id_column=id_column, default_region=settings.default_region
        )
    console.print(summary.describe())


@app.command()
def query(
    ctx: typer.Context,
    sql: Annotated[str, typer.Argument(help="SQL over the warehouse tables (events, spend).")],
    format: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.table,
    engine: Annotated[str, typer.Option(help="duckdb or spark.")] = "duckdb",
) -> None:
    """Run SQL over the warehouse and print the result."""
    from omniweave.storage.query import run_query, write_result

    result = run_query(_settings(ctx), sql, engine=engine)
    write_result(result, format.value, console)


@app.command()
def attribution(
    ctx: typer.Context,
    paths: Annotated[
        Path | None,
        typer.Option(
            help="A paths CSV (path, total_conversions, total_conversion_value, total_null); without it, journeys are built from the event log."
        ),
    ] = None,
    model: Annotated[
        str, typer.Option(help="first_touch, last_touch, linear, position_based, time_decay, markov, shapley or all.")
    ] = "all",
    format: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.table,
    half_life: Annotated[
        float, typer.Option(help="time_decay: touches before the conversion at which a touch's weight halves.")
    ] = 1.0,
    allocation: Annotated[
        str, typer.Option(help="markov: global (totals split by removal effect) or per_journey.")
    ] = "global",
    order: Annotated[int, typer.Option(help="markov: order of the chain (a state is the last N channels).")] = 1,
    lookback_days: Annotated[
        float, typer.Option(help="Event log: days before an order in which touches count.")
    ] = 30.0,
    dedup_minutes: Annotated[
        float,
        typer.Option(
            help="Event log: a touch on the same channel (or campaign) this soon after another counts once; 0 keeps all."
        ),
    ] = 30.0,
    by: Annotated[str, typer.Option(help="Event log: credit channels or campaigns (channel or campaign).")] = "channel",
    since: Annotated[
        str | None, typer.Option(help="Event log: first day (YYYY-MM-DD) or instant (ISO 8601) of the period.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Event log: last day (YYYY-MM-DD, included) or end instant (ISO 8601, excluded).")
    ] = None,
    exposures: Annotated[
        bool, typer.Option(help="Event log: also count opens, impressions and received pushes as touches.")
    ] = False,
    engine: Annotated[str, typer.Option(help="Event log: duckdb or spark.")] = "duckdb",
) -> None:
    """Credit conversions and value to channels with one attribution model, or all side by side.

    With --paths, on a paths file; otherwise on journeys built from the event log (docs/attribution.md),
    with ROAS and ROI wherever the spend dataset has spend for a channel or campaign.
    """
    import csv
    import io
    from datetime import UTC, datetime, timedelta

    import orjson

    from omniweave.errors import InputError
    from omniweave.measure.attribution import MODELS, attribute, read_paths_csv

    def moment(text: str | None, option: str, *, end: bool = False) -> datetime | None:
        if text is None:
            return None
        try:
            parsed = datetime.fromisoformat(text.strip())
        except ValueError:
            raise InputError(
                f"got {text!r}; expected a date (YYYY-MM-DD) or an ISO 8601 instant", field=option
            ) from None
        day_only = len(text.strip()) == 10
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        return parsed + timedelta(days=1) if end and day_only else parsed  # --until DAY includes that day

    names = list(MODELS) if model == "all" else [model]
    journeys = None
    where = str(paths) if paths is not None else "event log"
    try:
        if model != "all" and model not in MODELS:
            raise InputError(f"got {model!r}; expected one of {', '.join(MODELS)} or all", field="--model")
        if paths is not None:
            table = read_paths_csv(paths)
        else:
            from omniweave.measure.service.paths import journeys_from_log
            from omniweave.runtime import Runtime

            runtime = Runtime(_settings(ctx))
            try:
                journeys = journeys_from_log(
                    runtime,
                    lookback_days=lookback_days,
                    dedup_minutes=dedup_minutes,
                    by=by,
                    since=moment(since, "--since"),
                    until=moment(until, "--until", end=True),
                    exposures=exposures,
                    engine=engine,
                )
            finally:
                runtime.close()
            table = journeys.paths
        results = [attribute(table, name, half_life=half_life, allocation=allocation, order=order) for name in names]
    except InputError as exc:
        hint = "" if paths is not None else " (or pass --paths FILE.csv to attribute a paths file)"
        err_console.print(f"{where}: {exc}{hint}", style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    spend = journeys.spend if journeys is not None else {}
    labels = [*table.channels, *(label for label in sorted(spend) if label not in table.channels)]
    if journeys is not None:
        from omniweave.measure.service.paths import returns

        earned = {r.model: returns(r, spend) for r in results}
    if format is OutputFormat.json:
        document: dict[str, object] = {
            "total_conversions": table.total_conversions,
            "total_conversion_value": table.total_value,
            "half_life": half_life,
            "allocation": allocation,
            "order": order,
        }
        if journeys is not None:
            document |= {
                "source": "event log",
                "by": journeys.by,
                "lookback_days": journeys.lookback_days,
                "dedup_minutes": journeys.dedup_minutes,
                "exposures": journeys.exposures,
                "since": journeys.since.isoformat() if journeys.since else None,
                "until": journeys.until.isoformat() if journeys.until else None,
                "untouched_conversions": journeys.untouched_conversions,
                "untouched_value": journeys.untouched_value,
                "total_null": sum(row.nulls for row in table.rows),
                "spend": spend,
            }
        document["models"] = {
            r.model: {
                "channels": {
                    ch: {"conversions": r.conversions.get(ch, 0.0), "value": r.value.get(ch, 0.0)}
                    for ch in (labels if journeys is not None else table.channels)
                },
                **({"removal_effects": r.removal_effects} if r.removal_effects is not None else {}),
                **(
                    {
                        "returns": {
                            label: {"spend": x.spend, "value": x.value, "roas": x.roas, "roi": x.roi}
                            for label, x in earned[r.model].items()
                        }
                    }
                    if journeys is not None
                    else {}
                ),
            }
            for r in results
        }
        console.out(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        return
    if format is OutputFormat.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if journeys is None:
            writer.writerow(["model", "channel", "conversions", "value"])
            for r in results:
                writer.writerows([r.model, ch, repr(r.conversions[ch]), repr(r.value[ch])] for ch in table.channels)
        else:
            writer.writerow(["model", "channel", "conversions", "value", "spend", "roas", "roi"])
            for r in results:
                for ch in labels:
                    x = earned[r.model].get(ch)
                    writer.writerow(
                        [
                            r.model,
                            ch,
                            repr(r.conversions.get(ch, 0.0)),
                            repr(r.value.get(ch, 0.0)),
                            *((repr(x.spend), repr(x.roas), repr(x.roi)) if x else ("", "", "")),
                        ]
                    )
        console.out(buffer.getvalue(), end="")
        return
    short = {"first_touch": "first", "last_touch": "last", "position_based": "position", "time_decay": "decay"}
    shown = labels if journeys is not None else list(table.channels)
    for measure, total in (("conversions", table.total_conversions), ("value", table.total_value)):
        out = Table(
            journeys.by if journeys is not None else "channel",
            *(short.get(r.model, r.model) for r in results),
            title=f"credited {measure} (total {total:,.2f})",
        )
        for ch in shown:
            out.add_row(ch, *(f"{getattr(r, measure).get(ch, 0.0):,.2f}" for r in results))
        console.print(out)
    if journeys is not None:
        console.print(
            f"{len(table.rows):,} distinct paths, {sum(row.nulls for row in table.rows):,.0f} journeys "
            f"without an order; {journeys.untouched_conversions:,.0f} orders "
            f"({journeys.untouched_value:,.2f}) had no touch in their {journeys.lookback_days:g}-day "
            "lookback and are not credited",
            markup=False,
        )
        if spend:
            out = Table(
                journeys.by,
                "spend",
                *(f"ROAS {short.get(r.model, r.model)}" for r in results),
                title="return on spend (ROAS = credited value / spend; ROI = ROAS - 1)",
            )
            for label in sorted(spend):
                if spend[label] > 0:
                    out.add_row(
                        label, f"{spend[label]:,.2f}", *(f"{earned[r.model][label].roas:,.2f}" for r in results)
                    )
            console.print(out)


clv_app = typer.Typer(help="Customer lifetime value: BG/NBD and Gamma-Gamma (docs/clv.md).", no_args_is_help=True)
app.add_typer(clv_app, name="clv")


class ClvFormat(StrEnum):
    table = "table"
    json = "json"


def _read_transactions(file: Path, columns: list[str]) -> object:
    """The named columns of a CSV (read as text, so the summary can name a bad row) or Parquet file."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    from omniweave.errors import InputError

    if not file.is_file():
        raise InputError(f"cannot read {str(file)!r}: no such file; expected a CSV or Parquet file")
    wanted = list(dict.fromkeys(columns))
    kind = "Parquet" if file.suffix.lower() in (".parquet", ".pq") else "CSV"
    try:
        if kind == "Parquet":
            present = pq.read_schema(file).names
        else:
            with pa_csv.open_csv(
                file, convert_options=pa_csv.ConvertOptions(column_types={name: pa.string() for name in wanted})
            ) as reader:
                present = reader.schema.names
        for name in wanted:
            if name not in present:
                raise InputError(f"missing column {name!r}; got columns {present}", field=name)
        if kind == "Parquet":
            return pq.read_table(file, columns=wanted)
        return pa_csv.read_csv(
            file,
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in wanted}, include_columns=wanted, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        raise InputError(f"cannot read {str(file)!r} as {kind}: {exc}") from None


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
    format: Annotated[ClvFormat, typer.Option("--format", help="Output format.")] = ClvFormat.table,
) -> None:
    """Fit BG/NBD (purchase frequency) and Gamma-Gamma (spend) on a transactions file."""
    import orjson

    from omniweave.errors import InputError
    from omniweave.profiles.clv import fit_bgnbd, fit_gamma_gamma, summarize_table

    try:
        columns = [customer_col, date_col] + ([value_col] if value_col else [])
        table = _read_transactions(transactions, columns)
        summary = summarize_table(
            table,
            customer_col=customer_col,
            date_col=date_col,
            value_col=value_col,
            observation_end=observation_end,
            time_unit=time_unit,
        )
        purchases = fit_bgnbd(summary.frequency, summary.recency, summary.T)
        spend = fit_gamma_gamma(summary.frequency, summary.monetary_value) if value_col else None
    except InputError as exc:
        err_console.print(f"{transactions}: {exc}", style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    document = {
        "customers": len(summary),
        "repeat_customers": int((summary.frequency > 0).sum()),
        "observation_end": str(summary.observation_end),
        "time_unit": summary.time_unit,
        "bgnbd": {
            "r": purchases.r,
            "alpha": purchases.alpha,
            "a": purchases.a,
            "b": purchases.b,
            "log_likelihood": purchases.log_likelihood,
            "converged": purchases.converged,
        },
        "gamma_gamma": None
        if spend is None
        else {
            "p": spend.p,
            "q": spend.q,
            "v": spend.v,
            "log_likelihood": spend.log_likelihood,
            "customers": spend.n_customers,
            "converged": spend.converged,
        },
    }
    if format is ClvFormat.json:
        console.out(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    else:
        out = Table(
            "model",
            "parameter",
            "value",
            title=f"{len(summary):,} customers, "
            f"{document['repeat_customers']:,} with repeat purchases, time in {time_unit}, "
            f"observed to {summary.observation_end}",
        )
        for model in ("bgnbd", "gamma_gamma"):
            for name, value in (document[model] or {}).items():
                if name not in ("converged", "customers"):
                    out.add_row(model, name, f"{value:,.6g}" if name != "log_likelihood" else f"{value:,.2f}")
        console.print(out)
    if not purchases.converged or (spend is not None and not spend.converged):
        err_console.print("warning: the optimiser did not converge; the parameters may be unreliable", style="yellow")


@app.command()
def kpis(
    ctx: typer.Context,
    period: Annotated[str, typer.Option(help="day, week or month.")] = "month",
    by: Annotated[str | None, typer.Option(help="A breakdown: channel, store or campaign.")] = None,
    kpi: Annotated[list[str] | None, typer.Option("--kpi", help="Only these KPIs (repeat the option).")] = None,
    since: Annotated[str | None, typer.Option(help="First day (YYYY-MM-DD).")] = None,
    until: Annotated[str | None, typer.Option(help="Last day (YYYY-MM-DD).")] = None,
    session_gap_minutes: Annotated[float, typer.Option(help="Inactivity that ends a web/app session.")] = 30.0,
    stores: Annotated[
        Path | None, typer.Option(help="A CSV with store_id, floor_area_sqft (sales per square foot).")
    ] = None,
    products: Annotated[
        Path | None, typer.Option(help="A CSV with sku (or product_id), cost (cost of sales, margin).")
    ] = None,
    engine: Annotated[str, typer.Option(help="duckdb or spark.")] = "duckdb",
    format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
) -> None:
    """The omnichannel KPI catalogue (awareness, engagement, conversion, loyalty) per period (docs/kpis.md)."""
    import csv
    import io
    from datetime import date

    import orjson

    from omniweave.errors import InputError
    from omniweave.measure.service.kpis import floor_areas_from_csv, kpi_table, product_costs_from_csv

    def day(raw: str | None, field: str) -> date | None:
        if raw is None:
            return None
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise InputError(f"got {raw!r}; expected a day such as 2026-03-01", field=field) from None

    with _opened(ctx) as rt:
        table = kpi_table(
            rt,
            period=period,
            by=by,
            kpis=kpi or None,
            since=day(since, "--since"),
            until=day(until, "--until"),
            session_gap_minutes=session_gap_minutes,
            floor_areas=floor_areas_from_csv(stores) if stores else None,
            product_costs=product_costs_from_csv(products) if products else None,
            engine=engine,
        )
    rows = table.to_pylist()
    for row in rows:
        row["period"] = row["period"].isoformat()
    if format is OutputFormat.json:
        console.out(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    if format is OutputFormat.csv:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=table.column_names, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        console.out(buffer.getvalue(), end="")
        return
    out = Table(
        "period",
        "group",
        "kpi",
        *(["dimension"] if by else []),
        "value",
        "unit",
        "scope",
        title=f"KPIs per {period}" + (f" by {by}" if by else ""),
    )
    for row in rows:
        value = row["value"]
        shown = f"{value:,.0f}" if row["unit"] == "count" else f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.2f}"
        out.add_row(
            row["period"],
            row["group"],
            row["kpi"],
            *([row["dimension_value"]] if by else []),
            shown,
            row["unit"],
            row["scope"],
        )
    console.print(out)


@app.command()
def budget(
    ctx: typer.Context,
    total: Annotated[float | None, typer.Option(help="Spend per period to split (default: the current mean).")] = None,
    period_days: Annotated[int, typer.Option(help="Days per period of the history.")] = 7,
    model: Annotated[str, typer.Option(help="The attribution model that credits revenue to channels.")] = "markov",
    lookback_days: Annotated[float, typer.Option(help="Touches this many days before an order count.")] = 30.0,
    max_change: Annotated[
        float, typer.Option(help="Keep each channel within this share of its current spend (-1: no limit).")
    ] = 0.5,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates for the interval of the expected change.")] = 200,
    format: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.table,
) -> None:
    """Recommend a budget split over the paid channels from spend and attributed revenue (docs/budget.md)."""
    import dataclasses

    import orjson

    from omniweave.measure.service.budget import recommend_from_log

    with _opened(ctx) as rt:
        history, advice = recommend_from_log(
            rt,
            total=total,
            period_days=period_days,
            model=model,
            lookback_days=lookback_days,
            bootstrap=bootstrap,
            max_change=None if max_change < 0 else max_change,
        )
    if format is OutputFormat.json:
        document = {
            "periods": [s.date().isoformat() for s in history.starts],
            "period_days": period_days,
            "model": model,
            "spend": history.spend,
            "revenue": history.revenue,
            "recommendation": dataclasses.asdict(advice),
        }
        console.out(
            orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=str).decode()
        )
        return
    out = Table(
        "channel",
        "spend now",
        "recommended",
        "revenue now",
        "revenue then",
        "marginal return",
        "fit R²",
        title=f"{len(history.starts)} periods of {period_days} days, revenue credited by {model}",
    )
    for channel in advice.recommended:
        curve = advice.curves[channel]
        out.add_row(
            channel,
            f"{advice.current[channel]:,.2f}",
            f"{advice.recommended[channel]:,.2f}",
            f"{curve.revenue(advice.current[channel]):,.2f}",
            f"{curve.revenue(advice.recommended[channel]):,.2f}",
            f"{advice.marginal_returns[channel]:,.3f}",
            "" if curve.r_squared is None else f"{curve.r_squared:.2f}",
        )
    console.print(out)
    low, high = advice.change_interval
    console.print(
        f"expected revenue per period: {advice.current_revenue:,.2f} now, {advice.recommended_revenue:,.2f} "
        f"with the recommended split ({advice.change:+,.2f}; {advice.confidence:.0%} interval "
        f"{low:+,.2f} to {high:+,.2f})"
    )


recommendations_app = typer.Typer(help="Next-product recommendations from co-purchases.", no_args_is_help=True)
app.add_typer(recommendations_app, name="recommendations")


@recommendations_app.command("build")
def recommendations_build(
    ctx: typer.Context,
    engine: Annotated[str, typer.Option(help="duckdb or spark.")] = "duckdb",
) -> None:
    """Rebuild the `recommendations` table (item-to-item co-purchase, online and in store); profiles pick it up."""
    from omniweave.profiles.service.recommendations import build_recommendations

    with _opened(ctx) as rt:
        summary = build_recommendations(rt, engine=engine)
    console.print(
        f"recommendations for {summary.persons:,} persons over {summary.products:,} products; "
        "run `omniweave profiles build` to add them to the profiles"
    )


experiments_app = typer.Typer(
    help="A/B and multi-arm tests recorded in the event log (docs/experiments.md).", no_args_is_help=True
)
app.add_typer(experiments_app, name="experiments")


@experiments_app.command("list")
def experiments_list(ctx: typer.Context) -> None:
    """Experiments in the log (Experiment Viewed events): arms and exposures."""
    from omniweave.measure.service.experiments import list_experiments
    from omniweave.runtime import Runtime

    rt = Runtime(_settings(ctx))
    try:
        out = Table("experiment", "arms", "exposures")
        for name, arms, events in list_experiments(rt):
            out.add_row(name, str(arms), f"{events:,}")
        console.print(out)
    finally:
        rt.close()


@experiments_app.command("analyze")
def experiments_analyze(
    ctx: typer.Context,
    experiment: Annotated[str, typer.Argument(help="The experiment_id of its Experiment Viewed events.")],
    control: Annotated[str | None, typer.Option(help="The control (holdout) arm; default: the first by name.")] = None,
    conversion_event: Annotated[str, typer.Option(help="The event that counts as a conversion.")] = "Order Completed",
    window_days: Annotated[
        int | None, typer.Option(help="Count conversions this many days after the first exposure.")
    ] = None,
    alpha: Annotated[float, typer.Option(help="Significance level (two-sided).")] = 0.05,
    tau: Annotated[float, typer.Option(help="mSPRT: the difference in conversion rate worth finding.")] = 0.01,
    format: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.table,
) -> None:
    """Conversion and revenue per arm against the control: z-test, Welch, P(best), and an always-valid p-value."""
    import dataclasses

    import orjson

    from omniweave.measure.service.experiments import analyze, experiment_units

    with _opened(ctx) as rt:
        units = experiment_units(rt, experiment, conversion_event=conversion_event, window_days=window_days)
        report = analyze(
            units,
            experiment,
            control=control,
            alpha=alpha,
            tau=tau,
            conversion_event=conversion_event,
            window_days=window_days,
        )
    if format is OutputFormat.json:
        console.out(
            orjson.dumps(
                dataclasses.asdict(report), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=str
            ).decode()
        )
        return
    comparisons = {c.arm: c for c in report.conversion.comparisons}
    out = Table(
        "arm",
        "units",
        "conversions",
        "rate",
        "lift",
        "p (Holm)",
        "P(best)",
        "always-valid p",
        "revenue/unit",
        title=f"{experiment}: {report.conversion_event}"
        + (f" within {window_days} days" if window_days else "")
        + f"; control {report.control}"
        + (f"; {report.mixed_units:,} units saw several arms (left out)" if report.mixed_units else ""),
    )
    for arm in report.arms:
        c = comparisons.get(arm.name)
        seq = report.sequential.get(arm.name)
        out.add_row(
            arm.name,
            f"{arm.units:,}",
            f"{arm.conversions:,}",
            f"{arm.conversions / arm.units:.2%}" if arm.units else "-",
            f"{c.lift:+.1%}" if c is not None and c.lift is not None else "-",
            f"{c.adjusted_p_value:.4f}" if c is not None and c.adjusted_p_value is not None else "-",
            f"{report.bayesian.probability_best[arm.name]:.3f}",
            f"{seq.looks[-1].p_value:.4f}" if seq is not None and seq.looks else "-",
            f"{arm.revenue_per_unit:.2f}",
        )
    console.print(out)


@experiments_app.command("sample-size")
def experiments_sample_size(
    baseline: Annotated[float, typer.Option(help="The control's conversion rate, e.g. 0.05.")],
    mde: Annotated[float, typer.Option(help="The smallest absolute difference worth finding, e.g. 0.01.")],
    alpha: Annotated[float, typer.Option(help="Significance level (two-sided).")] = 0.05,
    power: Annotated[float, typer.Option(help="Power.")] = 0.8,
) -> None:
    """Units per arm needed to find a difference in conversion rate."""
    from omniweave.errors import InputError
    from omniweave.measure.experiments import sample_size_two_proportions

    try:
        result = sample_size_two_proportions(baseline, mde, alpha=alpha, power=power)
    except InputError as exc:
        err_console.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(
        f"{result.control:,} units in the control and {result.treatment:,} in the treatment "
        f"({result.total:,} in all) to find {result.baseline:.2%} -> {result.target:.2%} "
        f"at alpha {result.alpha} with power {result.power}"
    )


def main() -> None:
    try:
        app()
    except OmniweaveError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()


segments_app = typer.Typer(help="Segments: audiences written as files (docs/segments.md).", no_args_is_help=True)
app.add_typer(segments_app, name="segments")


@segments_app.command("list")
def segments_list(
    ctx: typer.Context,
    format: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.table,
) -> None:
    """List the segments: the built-in library and the project's `segments/` files."""
    import orjson
    from rich.table import Table

    from omniweave.segments.service.evaluate import load_segments, segment_summaries

    with _opened(ctx) as rt:
        rows = segment_summaries(load_segments(rt.settings.home))
    if format == OutputFormat.json:
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    table = Table("id", "name", "from", "description")
    for row in rows:
        table.add_row(row["id"], row["name"], row["source"], row["description"])
    console.print(table)


@segments_app.command("validate")
def segments_validate(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="Segment files (YAML or TOML).")],
) -> None:
    """Check segment files: every problem of every file is printed (exit code 2 if any)."""
    from omniweave.errors import InputError
    from omniweave.segments.service.evaluate import read_segment_file

    failed = False
    for path in files:
        try:
            seg = read_segment_file(path)
        except InputError as exc:
            err_console.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
            failed = True
            continue
        except OSError as exc:
            err_console.print(f"{path}: cannot read: {exc}", style="red", markup=False, highlight=False)
            failed = True
            continue
        console.print(f"{path}: ok ({seg.id})", markup=False, highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(2)


@segments_app.command("evaluate")
def segments_evaluate(
    ctx: typer.Context,
    engine: Annotated[str, typer.Option(help="duckdb or spark.")] = "duckdb",
    format: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.table,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Recount every behaviour condition over its whole window "
            "instead of carrying the last evaluation's counts forward.",
        ),
    ] = False,
) -> None:
    """Compute every segment's members, write `segment_members`, and log a Segment Entered / Exited event per change.

    Behaviour counts are carried forward from the last evaluation where the definitions allow, so a
    new day of events reads that day (and the days leaving the windows), not all history."""
    import orjson
    from rich.table import Table

    from omniweave.segments.service.evaluate import evaluate_segments

    with _opened(ctx) as rt, console.status("evaluating segments"):
        summary = evaluate_segments(rt, engine=engine, incremental=not full)
    if format == OutputFormat.json:
        typer.echo(
            orjson.dumps(
                {
                    "now": summary.now.isoformat(),
                    "events_written": summary.events_written,
                    "counting": summary.counting,
                    "segments": [r.__dict__ for r in summary.results],
                },
                option=orjson.OPT_INDENT_2,
            ).decode()
        )
        return
    table = Table(
        "segment", "name", "members", "entered", "exited", title=f"segments as of {summary.now:%Y-%m-%d %H:%M} UTC"
    )
    for r in summary.results:
        table.add_row(r.segment_id, r.name, f"{r.members:,}", f"{r.entered:,}", f"{r.exited:,}")
    console.print(table)
    console.print(f"behaviour conditions: {summary.counting}")
    console.print(f"{summary.events_written:,} Segment Entered / Exited events written to the event log")


@segments_app.command("follow")
def segments_follow(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Process what the inbox holds now, then stop.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between looks at the inbox.")] = 0.5,
) -> None:
    """Keep event-based segments up to date in near real time: follow the collector's inbox and write a
    Segment Entered / Exited event as soon as an event changes a person's membership.

    Starts from the last `segments evaluate` (run that first, and regularly: it settles what the live
    path leaves to it, such as sequences, trait changes and persons not resolved yet)."""
    from omniweave.segments.service.live import LiveSegments

    with _opened(ctx) as rt:
        live = LiveSegments(rt)
        console.print(
            f"following the inbox for {len(live.live)} event-based segment(s) "
            f"({', '.join(live.live)}), counts as of {live.base:%Y-%m-%d %H:%M:%S} UTC"
        )

        def show(changes: list) -> None:  # type: ignore[type-arg]
            for c in changes:
                console.print(
                    f"{c.at:%Y-%m-%d %H:%M:%S} {c.person_id} {'entered' if c.entered else 'left'} {c.segment_id}",
                    markup=False,
                    highlight=False,
                )

        if once:
            while True:
                show(live.step())
                if not live.read_last:
                    break
            st = live.stats
            console.print(
                f"{st.events:,} events read, {st.matched:,} matched a condition, {st.changes:,} changes; "
                f"{st.unknown_person:,} of persons not resolved yet, {st.before_base:,} dated before the "
                f"counts"
            )
            return
        with contextlib.suppress(KeyboardInterrupt):
            live.follow(interval=interval, on_changes=show)


# commands kept in modules of their own
from omniweave.shells.cli import audiences as cli_audiences  # noqa: E402 (they register on `app`, defined above)
from omniweave.shells.cli import personas as cli_personas  # noqa: E402

cli_audiences.register(app, _opened)
cli_personas.register(app, _opened)
