"""CLI commands `omniweave personas ...` (registered on the main app by shells/cli/main.py)."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape


class PersonasFormat(StrEnum):
    text = "text"
    json = "json"


def _rule_text(where: dict[str, Any]) -> str:
    """A condition tree in one line: `store_orders >= 2 and online_orders = 0`."""
    symbols = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
    parts = []
    for cond in where.get("all", []):
        op = next(k for k in cond if k != "trait")
        value = cond[op]
        if op == "between":
            parts.append(f"{cond['trait']} between {value[0]} and {value[1]}")
        elif op == "contains":
            parts.append(f"{cond['trait']} contains {value!r}")
        else:
            parts.append(
                f"{cond['trait']} {symbols.get(op, op)} {str(value).lower() if isinstance(value, bool) else value}"
            )
    return " and ".join(parts) or "everyone"


def _figures(persona: Any) -> str:
    """The persona's figures, each group saying over whom it is taken: `over all 412 members: revenue
    3.20, ...; over the 3 buyers: average_order_value - (fewer than 5 buyers), ...`."""
    from omniweave.segments.personas import MIN_BUYERS_FOR_AVERAGES

    groups: dict[str, list[str]] = {"members": [], "buyers": []}
    for key, value in persona.kpis.items():
        shown = "-" if value is None else f"{value:,.2f}"
        groups[persona.kpi_basis.get(key, "members")].append(f"{key} {shown}")
    members, buyers = persona.members or persona.size, persona.buyers
    text = f"over all {members:,} members: {', '.join(groups['members'])}"
    if groups["buyers"]:
        few = f" (none shown: fewer than {MIN_BUYERS_FOR_AVERAGES} buyers)" if buyers < MIN_BUYERS_FOR_AVERAGES else ""
        text += f"; over the {buyers:,} buyers{few}: {', '.join(groups['buyers'])}"
    return text


def register(app: typer.Typer, opened: Callable[[typer.Context], Any]) -> None:
    """Add the `personas` commands to `app`; `opened(ctx)` is the context manager giving a Runtime."""
    personas_app = typer.Typer(
        help="Personas: named segments with target KPIs and preferred channels.", no_args_is_help=True
    )
    app.add_typer(personas_app, name="personas")
    console = Console()

    @personas_app.command("suggest")
    def suggest(
        ctx: typer.Context,
        k: Annotated[int | None, typer.Option("--k", help="Number of personas (default: chosen in 3..8).")] = None,
        write: Annotated[bool, typer.Option("--write", help="Write each persona as segments/<id>.yaml.")] = False,
        folder: Annotated[
            Path | None, typer.Option(help="Folder to write to (default: the project's segments/).")
        ] = None,
        seed: Annotated[int, typer.Option(help="Seed of the clustering (same seed, same personas).")] = 0,
        format: Annotated[PersonasFormat, typer.Option("--format", help="text or json.")] = PersonasFormat.text,
    ) -> None:
        """Propose personas by clustering the profiles (RFM, store/online mix, channel and category mix)."""
        import dataclasses

        import orjson

        from omniweave.segments.service.personas import suggest_from_profiles

        with opened(ctx) as rt:
            result = suggest_from_profiles(rt, k=k, seed=seed, write=write, folder=folder)
        if format is PersonasFormat.json:
            document = {
                "profiles": result.profiles,
                "k": result.k,
                "silhouettes": {str(key): v for key, v in result.silhouettes.items()},
                "folder": result.folder,
                "personas": [
                    {
                        **dataclasses.asdict(r.persona),
                        "rule_selects": r.rule_selects,
                        "overlap": r.overlap,
                        "precision": round(r.precision, 4),
                        "recall": round(r.recall, 4),
                        "path": r.path,
                    }
                    for r in result.personas
                ],
            }
            console.out(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())
            return
        chosen = (
            ""
            if not result.silhouettes
            else " (chosen by silhouette: "
            + ", ".join(f"k={key} {v:.3f}" for key, v in result.silhouettes.items())
            + ")"
        )
        console.print(f"{result.k} personas from {result.profiles:,} profiles{chosen}", highlight=False, soft_wrap=True)
        for r in result.personas:
            p = r.persona
            kpis = _figures(p)
            console.print(
                f"\n[bold]{escape(p.name)}[/bold]  ({p.id}): {p.size:,} persons, {p.share:.1%}",
                highlight=False,
                soft_wrap=True,
            )
            console.print(f"  {p.description}", highlight=False, markup=False, soft_wrap=True)
            console.print(f"  figures: {kpis}", highlight=False, markup=False, soft_wrap=True)
            console.print(f"  target KPIs: {', '.join(p.target_kpis)}", highlight=False, markup=False, soft_wrap=True)
            console.print(
                f"  preferred channels: {', '.join(p.preferred_channels) or '-'}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            console.print(
                f"  rule: {_rule_text(p.where)}: selects {r.rule_selects:,}, {r.overlap:,} of them in the "
                f"persona ({r.precision:.0%} precision, {r.recall:.0%} recall)",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            if r.path:
                console.print(f"  written to {r.path}", highlight=False, markup=False, soft_wrap=True)
