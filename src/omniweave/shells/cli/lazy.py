"""A root command group that imports a stage's command module only when one of its commands runs.

Each stage's commands live in their own module (`omniweave.shells.cli.<module>`, with a `register(app)`),
and importing them all would load every stage's libraries (Ibis, pandas, SciPy, PyArrow...) before any
command starts. The root group is therefore built from a small table of `LazyCommand`s: the command's
name, the module that registers it and the first paragraph of its help. `omniweave --help` lists the
commands from that table alone; resolving a command to run it (or to show its own `--help`) imports its
module, lets it register its commands on a scratch Typer app and swaps the real commands in.

The table must say what the modules register: tests/shells/test_cli_lazy.py registers every module
eagerly and compares names and help texts, so a command added to a module and not to the table fails
there rather than silently missing from `omniweave --help`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

PACKAGE = "omniweave.shells.cli"


@dataclass(frozen=True)
class LazyCommand:
    """One root command: its name, the module of `omniweave.shells.cli` that registers it, and the first
    paragraph of its help (what `omniweave --help` shows)."""

    name: str
    module: str
    help: str


def first_paragraph(text: str | None) -> str:
    """The first paragraph of a help text on one line, as the root help shows it."""
    paragraph = inspect.cleandoc(text or "").split("\n\n")[0]
    return " ".join(paragraph.split())


class _Placeholder(TyperCommand):
    """Stands for a command whose module is not imported yet: enough to be listed, never run."""

    def invoke(self, ctx: Any) -> Any:  # pragma: no cover - resolve_command always swaps it out first
        raise RuntimeError(f"the command {self.name!r} was run before its module was loaded")


def register_module(module: ModuleType, app: typer.Typer) -> None:
    """Call a command module's `register`; a few also take the shared `opened` runtime factory."""
    from omniweave.shells.cli.common import opened

    if len(inspect.signature(module.register).parameters) == 2:
        module.register(app, opened)
    else:
        module.register(app)


def commands_of(module_name: str, *, rich_markup_mode: Any = None) -> dict[str, Any]:
    """Import `omniweave.shells.cli.<module_name>` and return the click commands it registers, by name."""
    module = importlib.import_module(f"{PACKAGE}.{module_name}")
    scratch = typer.Typer() if rich_markup_mode is None else typer.Typer(rich_markup_mode=rich_markup_mode)
    register_module(module, scratch)
    return dict(typer.main.get_group(scratch).commands)


def lazy_group(table: Sequence[LazyCommand]) -> type[TyperGroup]:
    """A TyperGroup class (for `typer.Typer(cls=...)`) whose commands are `table`, loaded on first use."""
    by_name = {entry.name: entry for entry in table}
    if len(by_name) != len(table):
        raise ValueError("lazy commands: a name appears twice in the table")

    class LazyGroup(TyperGroup):
        def __init__(self, **attrs: Any) -> None:
            super().__init__(**attrs)
            for entry in table:
                if entry.name not in self.commands:
                    self.commands[entry.name] = _Placeholder(
                        entry.name, help=entry.help, rich_markup_mode=self.rich_markup_mode
                    )

        def load(self, name: str) -> None:
            """Swap in the real commands of the module that registers `name` (once)."""
            entry = by_name.get(name)
            if entry is None or not isinstance(self.commands.get(name), _Placeholder):
                return
            loaded = commands_of(entry.module, rich_markup_mode=self.rich_markup_mode)
            if name not in loaded:
                raise RuntimeError(f"{PACKAGE}.{entry.module} does not register the command {name!r}")
            for other, command in loaded.items():
                if isinstance(self.commands.get(other), _Placeholder) or other not in self.commands:
                    self.commands[other] = command

        def resolve_command(self, ctx: Any, args: list[str]) -> Any:
            if args:
                self.load(args[0])
            return super().resolve_command(ctx, args)

    return LazyGroup
