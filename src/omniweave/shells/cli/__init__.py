"""The command line: one module per stage; `main` is the entry point."""

from omniweave.shells.cli.main import app, main

__all__ = ["app", "main"]
