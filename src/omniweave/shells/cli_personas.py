"""CLI commands `omniweave personas ...` (registered on the main app by shells/cli.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer


def register(app: typer.Typer, opened: Callable[[typer.Context], Any]) -> None:
    """Add the `personas` commands to `app`; `opened(ctx)` is the context manager giving a Runtime."""
