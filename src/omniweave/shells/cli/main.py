"""The `omniweave` command line: the root app, its shared options (--config, --home) and `main()`.

The commands live in one module per stage (collect, identity, profiles, segments, activate, measure,
demo); each has a `register(app)` that adds them to the root app.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from omniweave.errors import OmniweaveError
from omniweave.privacy.masking import install_log_masking
from omniweave.settings import load_settings
from omniweave.shells.cli import (
    activate,
    audit,
    channels,
    collect,
    coupons,
    demo,
    identity,
    journeys,
    measure,
    messages,
    mmm,
    personas,
    privacy,
    profiles,
    segments,
)
from omniweave.shells.cli.common import err_console, opened

app = typer.Typer(help="omniweave: omnichannel marketing platform.", no_args_is_help=True, add_completion=False)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(help="Path to omniweave.toml.")] = None,
    home: Annotated[Path | None, typer.Option(help="Home folder (default $OMNIWEAVE_HOME or ./.omniweave).")] = None,
) -> None:
    install_log_masking()  # no plain e-mail or phone number in a log line (docs/privacy.md)
    # --home also says where to look for <home>/omniweave.toml, as $OMNIWEAVE_HOME does
    ctx.obj = load_settings(config_file=config, home=str(home) if home is not None else None)


audit.register(app)
channels.register(app)
collect.register(app)
demo.register(app)
identity.register(app)
journeys.register(app)
profiles.register(app)
measure.register(app)
mmm.register(app)
segments.register(app)
activate.register(app, opened)
coupons.register(app)
messages.register(app)
personas.register(app, opened)
privacy.register(app)


def main() -> None:
    try:
        app()
    except OmniweaveError as exc:
        err_console.print(f"error: {exc}", style="red", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
