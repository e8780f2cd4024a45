"""What every CLI module shares: the consoles, the output formats and the Runtime for one command."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from enum import StrEnum
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from omniweave.settings import Settings

if TYPE_CHECKING:
    from omniweave.runtime import Runtime

console = Console()
err_console = Console(stderr=True)


class OutputFormat(StrEnum):
    """The `--format` choices of the commands that print a result."""

    table = "table"
    csv = "csv"
    json = "json"


def settings_of(ctx: typer.Context) -> Settings:
    """The Settings built once by the root callback (from --config, --home and the environment)."""
    return ctx.obj  # type: ignore[no-any-return]


@contextlib.contextmanager
def opened(ctx: typer.Context, engine: str | None = None) -> Iterator[Runtime]:
    """A runtime for one command, closed after it; bad input is printed and exits with code 2.

    `engine` (a command's --engine) replaces the settings' warehouse engine for this command."""
    from omniweave.errors import InputError
    from omniweave.runtime import Runtime

    settings = settings_of(ctx)
    rt = Runtime(settings if engine is None else settings.with_overrides(engine=engine))
    try:
        yield rt
    except InputError as exc:
        err_console.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    finally:
        rt.close()


@contextlib.contextmanager
def reported(where: str = "", hint: str = "") -> Iterator[None]:
    """Bad input raised in the block is printed (after `where: `, followed by `hint`) and exits with code 2."""
    from omniweave.errors import InputError

    try:
        yield
    except InputError as exc:
        prefix = f"{where}: " if where else ""
        err_console.print(f"{prefix}{exc}{hint}", style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
