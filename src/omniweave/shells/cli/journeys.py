"""CLI commands `omniweave journeys list|validate|publish|run|enter|simulate|stats|explain` (docs/journeys.md)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from omniweave.shells.cli.common import OutputFormat, console, err_console, opened, settings_of
from omniweave.shells.render import Grid, emit, grid

journeys_app = typer.Typer(
    help="Journeys: behaviour-triggered messages, exactly once, in each person's own time (docs/journeys.md).",
    no_args_is_help=True,
)

FormatOption = Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")]


def holdout_test(control: tuple[str, int, int], treated: tuple[str, int, int]) -> dict[str, Any]:
    """The experiments' two-proportion z-test of the treated runs against the holdout (measure/experiments.py)."""
    from omniweave.measure.experiments import ConversionArm, two_proportion_ztest

    return asdict(two_proportion_ztest(ConversionArm(*control), ConversionArm(*treated)))


def _when(at: float | None) -> str:
    return "" if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"


@journeys_app.command("list")
def journeys_list(ctx: typer.Context, format: FormatOption = OutputFormat.table) -> None:
    """Built-in and project journeys (`<project>/journeys/*.yaml|toml`): published version and runs by status."""
    from omniweave.activate.service.journey_stats import list_journeys

    with opened(ctx) as rt:
        rows = [s.to_dict() for s in list_journeys(rt)]
    records = [{**r, "runs": _counts(r["runs"]), "published_version": r["published_version"] or ""} for r in rows]
    emit(
        console,
        format,
        document=rows,
        records=records,
        columns=("name", "source", "published_version", "runs", "entry", "problems", "description"),
        views=[
            grid(
                ["name", "source", "published", "runs", "entry"],
                [[r["name"], r["source"], r["published_version"], r["runs"], r["entry"]] for r in records],
            )
        ],
    )


@journeys_app.command("validate")
def journeys_validate(
    ctx: typer.Context,
    targets: Annotated[
        list[str] | None, typer.Argument(help="Journey files or names; default: every built-in and project journey.")
    ] = None,
) -> None:
    """Check journey files: every problem of each at once (path, what was received, what is allowed). Exit 1 if any."""
    from omniweave.activate.service.journey_stats import find_journey, journey_files
    from omniweave.errors import InputError

    settings = settings_of(ctx)
    names = targets or sorted(journey_files(settings))
    failed = False
    for target in names:
        try:
            j = find_journey(settings, target)
        except InputError as exc:
            err_console.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
            failed = True
            continue
        console.print(f"{j.name}: ok ({len(j.steps)} steps)", markup=False, highlight=False)
    if failed:
        raise typer.Exit(1)


@journeys_app.command("publish")
def journeys_publish(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A journey name (built-in or project file) or a journey file.")],
    maps: Annotated[
        list[str] | None,
        typer.Option("--map", help="OLD_STEP=NEW_STEP: move runs waiting at a step the new version removes."),
    ] = None,
    note: Annotated[str | None, typer.Option(help="A note stored with the version.")] = None,
    format: FormatOption = OutputFormat.table,
) -> None:
    """Publish a journey: a new version (or unchanged), runs waiting at removed steps and how many moved."""
    from omniweave.activate.journeys.definition import StepMapping
    from omniweave.activate.service.journey_stats import find_journey
    from omniweave.activate.service.journeys import publish

    with opened(ctx) as rt:
        journey = find_journey(rt.settings, name)
        mapping = StepMapping.parse(maps or []).moves
        result = publish(rt, journey, mapping=mapping, note=note)
    doc = result.to_dict()
    lines: list[Grid | str] = [
        f"{result.journey}: version {result.version}" + (" (new)" if result.created else " (unchanged)")
    ]
    for step, count in sorted(result.removed_steps.items()):
        target = dict(mapping).get(step)
        lines.append(
            f"  {count} run(s) at removed step {step}: " + (f"moved to {target}" if target else "stay on their version")
        )
    if result.moved:
        lines.append(f"  moved: {result.moved}")
    emit(console, format, document=doc, views=lines)


@journeys_app.command("run")
def journeys_run(
    ctx: typer.Context,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes (one on SQLite).")] = 1,
    until_idle: Annotated[bool, typer.Option("--until-idle", help="Stop when nothing is left to do.")] = False,
    fake: Annotated[bool, typer.Option("--fake", help="Send through the local fake channels.")] = False,
    sink: Annotated[Path | None, typer.Option(help="Send every message to this durable file instead.")] = None,
) -> None:
    """Run the engine: triggers, due runs, sends (Ctrl-C stops)."""
    from omniweave.activate.service.journeys import run

    with opened(ctx) as rt:
        if rt.store.dialect == "sqlite" and workers > 1:
            err_console.print(f"SQLite has one writer: running 1 worker instead of {workers}", markup=False)
        try:
            report = run(rt, workers=workers, until_idle=until_idle, fake=fake, sink=str(sink) if sink else None)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
    console.print(f"journeys: {report.workers} worker(s), {report.seconds:.1f} s", markup=False)


@journeys_app.command("worker", hidden=True)
def journeys_worker(
    home: Annotated[str, typer.Option()],
    sink: Annotated[str | None, typer.Option()] = None,
    fake: Annotated[bool, typer.Option("--fake")] = False,
    until_idle: Annotated[bool, typer.Option("--until-idle")] = False,
    lease: Annotated[float, typer.Option()] = 30.0,
    batch: Annotated[int, typer.Option()] = 200,
) -> None:
    """One worker process (as `python -m omniweave.activate.service.journeys worker`)."""
    from omniweave.activate.service.journeys import main

    argv = ["worker", "--home", home, "--lease", str(lease), "--batch", str(batch)]
    argv += (["--sink", sink] if sink else []) + (["--fake"] if fake else []) + (["--until-idle"] if until_idle else [])
    raise typer.Exit(main(argv))


def _read_persons(path: Path) -> list[str]:
    from omniweave.errors import InputError

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}", field="persons") from None
    out = []
    for line in text.splitlines():
        value = line.split(",")[0].strip()
        if value and not value.startswith("#") and value not in ("person_id", "id"):
            out.append(value)
    if not out:
        raise InputError(f"{path} holds no person: expected one identifier a line", field="persons")
    return out


@journeys_app.command("enter")
def journeys_enter(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A published journey.")],
    persons: Annotated[
        Path | None, typer.Option(help="A file of identifiers, one a line (CSV: the first column).")
    ] = None,
    person: Annotated[str | None, typer.Option(help="One identifier (person id, user id, e-mail …).")] = None,
    key: Annotated[
        str | None,
        typer.Option(help="The entry key (default: from the persons given; the same call enters nobody twice)."),
    ] = None,
) -> None:
    """Enter people into a journey (the API/file entry)."""
    from omniweave.activate.service.journey_stats import resolve_persons
    from omniweave.activate.service.journeys import JourneyEngine
    from omniweave.errors import InputError

    with opened(ctx) as rt:
        if (persons is None) == (person is None):
            raise InputError("expected exactly one of --persons FILE or --person ID", field="persons")
        wanted = _read_persons(persons) if persons is not None else [str(person)]
        ids = resolve_persons(rt, wanted)
        entry_key = key or "cli-" + hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]
        started = JourneyEngine(rt).enter_many(name, ids, entry_key)
    console.print(f"{name}: {started} of {len(ids)} entered (key {entry_key})", markup=False, highlight=False)


@journeys_app.command("simulate")
def journeys_simulate(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The journey (built-in or project file name, or a file).")],
    days: Annotated[float, typer.Option(help="Replay the events of this many days before --until.")] = 7.0,
    file: Annotated[Path | None, typer.Option(help="The draft journey file (default: the file of NAME).")] = None,
    until: Annotated[str | None, typer.Option(help="The window's end, ISO date or time (default: now).")] = None,
    format: FormatOption = OutputFormat.table,
) -> None:
    """Replay recent events through a draft version: entries, sends, cap and quiet-hour hits, conversions.
    Nothing is sent and the real store is not written."""
    from omniweave.activate.service.journey_sim import simulate, summary_lines
    from omniweave.activate.service.journey_stats import find_journey
    from omniweave.errors import InputError

    with opened(ctx) as rt:
        journey = find_journey(rt.settings, str(file) if file is not None else name)
        if file is not None and journey.name != name:
            raise InputError(f"the file {file} holds journey {journey.name!r}, not {name!r}", field="file")
        end = None
        if until is not None:
            try:
                moment = datetime.fromisoformat(until)
            except ValueError:
                raise InputError(f"expected an ISO date or time; got {until!r}", field="until") from None
            end = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
        result = simulate(rt, journey, days=days, until=end)
    emit(console, format, document=result.to_dict(), views=list(summary_lines(result)))


@journeys_app.command("stats")
def journeys_stats(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A published journey.")],
    format: FormatOption = OutputFormat.table,
) -> None:
    """Per node entered, sent, skipped by reason, converted; the holdout's lift (two-proportion z-test)."""
    from omniweave.activate.service.journey_stats import journey_stats

    with opened(ctx) as rt:
        result = journey_stats(rt, name, compare=holdout_test)
    doc = result.to_dict()
    records = [{**n, "skipped": _counts(n["skipped"]), "other": _counts(n["other"])} for n in doc["nodes"]]
    views: list[Grid | str] = [
        f"{name}: runs {_counts(result.runs)}",
        grid(
            ["node", "entered", "sent", "skipped", "converted"],
            [[r["node"], r["entered"], r["sent"], r["skipped"], r["converted"]] for r in records],
        ),
        f"treated: {result.treated[1]} of {result.treated[0]} converted; "
        f"held out: {result.held_out[1]} of {result.held_out[0]} converted",
    ]
    if result.lift is not None:
        low, high = result.lift["difference_interval"]
        views.append(
            f"lift: {result.lift['difference']:+.4f} ({low:+.4f} to {high:+.4f}, "
            f"{result.lift['confidence']:.0%}), p = {result.lift['p_value']:.4g}"
        )
    else:
        views.append(f"lift: - ({result.lift_note})")
    emit(console, format, document=doc, records=records, views=views)


@journeys_app.command("explain")
def journeys_explain(
    ctx: typer.Context,
    person: Annotated[str, typer.Argument(help="Any identifier: person id, user id, e-mail, phone …")],
    journey: Annotated[str | None, typer.Option(help="Only this journey's runs.")] = None,
    format: FormatOption = OutputFormat.table,
) -> None:
    """Why did (or didn't) this person get this message: each run's entry, steps and policy decisions."""
    from omniweave.activate.service.journey_stats import explain

    with opened(ctx) as rt:
        result = explain(rt, person, journey=journey)
    lines: list[Grid | str] = [f"person {result.person_id} ({person}): {len(result.runs)} run(s)"]
    for run in result.runs:
        lines.append(
            f"{run.journey} v{run.version}: entered {_when(run.entered_at)} by {run.entry_key}; "
            f"{run.status} at {run.node}" + (f" ({run.end_reason})" if run.end_reason else "")
        )
        lines += [f"  {_when(s['at'])} {s['node']}: {s['outcome']} — {s['reason'] or ''}" for s in run.steps]
        lines += [
            f"  policy {_when(d['at'])} {d['channel']} ({d['message_class']}): {d['outcome']} — {d['reason'] or ''}"
            for d in run.decisions
        ]
    for d in result.other_decisions:
        lines.append(f"other send {d['key']} {d['channel']}: {d['outcome']} — {d['reason'] or ''}")
    emit(console, format, document=result.to_dict(), views=lines)


def register(app: typer.Typer) -> None:
    """Add the `journeys` commands to the root app."""
    app.add_typer(journeys_app, name="journeys")


__all__ = ["holdout_test", "register"]
