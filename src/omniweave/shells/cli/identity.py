"""CLI commands of the identity stage: `resolve`, `identity explain|split` and `match`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from omniweave.shells.cli.common import console, settings_of
from omniweave.shells.render import grid, print_grid, print_text

identity_app = typer.Typer(help="Look into and correct the identity graph.", no_args_is_help=True)


def resolve(
    ctx: typer.Context,
    engine: Annotated[
        str | None, typer.Option(help="duckdb or spark: the engine that reads the events (default: the setting).")
    ] = None,
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

    settings = settings_of(ctx)
    rt = Runtime(settings if engine is None else settings.with_overrides(engine=engine))
    try:
        if threshold is None:
            resolve_identities(rt, console=console, probabilistic=probabilistic)
        else:
            resolve_identities(rt, console=console, probabilistic=probabilistic, threshold=threshold)
        demo_folder = rt.settings.home_path / "demo"
        if (demo_folder / "ground_truth" / "identities.csv").is_file():
            console.print(evaluate_against_ground_truth(rt, demo_folder).describe())
    finally:
        rt.close()


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

    rt = Runtime(settings_of(ctx))
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
    print_text(console, f"{_ident(found.identifier)} is person {found.person_id}")
    print_grid(
        console,
        grid(["kind", "values"], [[k, ", ".join(v)] for k, v in found.identifiers.items()], title="identifiers"),
    )
    print_grid(
        console,
        grid(
            ["#", "identifier", "linked to", "event", "when", "rule", "merged"],
            [
                [
                    str(n),
                    _ident(link.a),
                    _ident(link.b),
                    link.message_id,
                    link.timestamp,
                    link.rule,
                    f"{link.merged} → {link.survivor}" if link.merged else "",
                ]
                for n, link in enumerate(found.links, 1)
            ],
            title="links that built the person",
            keys=2,
        ),
    )


@identity_app.command("split")
def identity_split(
    ctx: typer.Context,
    person: Annotated[str, typer.Argument(help="The person id (an old, merged id works too).")],
    identifier: Annotated[str, typer.Option(help="kind:value that does not belong to the person.")],
) -> None:
    """Undo a wrong link: the identifier leaves the person, and every later `resolve` keeps it apart."""
    from omniweave.identity.service.operations import split_identifier
    from omniweave.runtime import Runtime

    rt = Runtime(settings_of(ctx))
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
        print_grid(
            console, grid(["kind", "values"], [[k, ", ".join(v)] for k, v in ids.items()], title=f"{title}: {pid}")
        )


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

    settings = settings_of(ctx)
    with console.status(f"matching {file.name}"):
        summary = match_file(
            file, output, threshold=threshold, id_column=id_column, default_region=settings.default_region
        )
    console.print(summary.describe())


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root `app`."""
    app.command()(resolve)
    app.add_typer(identity_app, name="identity")
    app.command()(match)
