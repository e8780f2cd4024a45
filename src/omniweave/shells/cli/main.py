"""The `omniweave` command line: the root app, its shared options (--config, --home) and `main()`.

The commands live in one module per stage (collect, identity, profiles, segments, activate, measure,
demo); each has a `register(app)` that adds them to the root app, called when one of its commands runs
(shells/cli/lazy.py), so that a command loads only its own stage's libraries.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from omniweave.errors import OmniweaveError
from omniweave.shells.cli.lazy import LazyCommand, lazy_group

# Every root command, the module of omniweave.shells.cli that registers it and the first paragraph of
# its help: `omniweave --help` is printed from this table, and a command's module is imported only when
# that command runs (shells/cli/lazy.py; tests/shells/test_cli_lazy.py checks the table against the
# modules). A command added to a module is added here too.
# fmt: off
COMMANDS = (
    LazyCommand("serve", "collect", "Run the collector and REST API (and the loader that moves the inbox into the event log)."),
    LazyCommand("keys", "collect", "Sources and their keys."),
    LazyCommand("import", "collect", "Import an offline file as events (or, for ad spend, stores and products, into their datasets)."),
    LazyCommand("load", "collect", "Move everything waiting in the inbox into the event log now."),
    LazyCommand("query", "collect", "Run SQL over the warehouse and print the result."),
    LazyCommand("log", "log", "The event log (Parquet, partitioned by day)."),
    LazyCommand("resolve", "identity", "Stitch the identifiers of new events into persons and rewrite the `identities` table."),
    LazyCommand("identity", "identity", "Look into and correct the identity graph."),
    LazyCommand("match", "identity", "Find the duplicates in a customer file with a probabilistic (Fellegi-Sunter) model."),
    LazyCommand("profiles", "profiles", "Unified profiles: one row per person."),
    LazyCommand("profile", "profiles", "One person's profile."),
    LazyCommand("clv", "profiles", "Customer lifetime value: BG/NBD and Gamma-Gamma (docs/clv.md)."),
    LazyCommand("recommendations", "profiles", "Next-product recommendations from co-purchases."),
    LazyCommand("segments", "segments", "Segments: audiences written as files (docs/segments.md)."),
    LazyCommand("personas", "personas", "Personas: named segments with target KPIs and preferred channels."),
    LazyCommand("journeys", "journeys", "Journeys: behaviour-triggered messages, exactly once, in each person's own time (docs/journeys.md)."),
    LazyCommand("messages", "messages", "Messages written once, rendered per channel under the brand kit (docs/content.md)."),
    LazyCommand("audiences", "activate", "Segments as ad-platform audiences (customer match, custom audiences)."),
    LazyCommand("coupons", "coupons", "Coupon pools and codes for tills, e-mails and print."),
    LazyCommand("qr", "coupons", "QR short links for print, TV, packaging and letters."),
    LazyCommand("forms", "forms", "Sign-up forms: hosted, embedded, in store; double opt-in (docs/forms.md)."),
    LazyCommand("sends", "channels", "The send ledger: what was sent, dead letters, replay, retries (docs/channels.md)."),
    LazyCommand("push", "channels", "Web push: VAPID keys (docs/channels.md, Web push)."),
    LazyCommand("print", "channels", "Direct mail: print batches (docs/channels.md, Direct mail)."),
    LazyCommand("attribution", "measure", "Credit conversions and value to channels with one attribution model, or all side by side."),
    LazyCommand("kpis", "measure", "The omnichannel KPI catalogue (awareness, engagement, conversion, loyalty) per period (docs/kpis.md)."),
    LazyCommand("experiments", "measure", "A/B and multi-arm tests recorded in the event log (docs/experiments.md)."),
    LazyCommand("budget", "measure", "Recommend a budget split over the paid channels, under the media-mix model's curves (docs/budget.md)."),
    LazyCommand("mmm", "mmm", "The media-mix model: what each channel (online and offline) adds to revenue."),
    LazyCommand("privacy", "privacy", "Consent per purpose, data-subject requests (export, delete, suppress), retention."),
    LazyCommand("audit", "audit", "The audit log, newest first: who did what to what, when and from where."),
    LazyCommand("users", "audit", "Dashboard users and their roles (owner, marketer, analyst, privacy_officer)."),
    LazyCommand(
        "demo",
        "demo",
        "Generate a demo retailer, run it through the collector and the importers, then serve the dashboard.",
    ),
)
# fmt: on

app = typer.Typer(
    cls=lazy_group(COMMANDS),
    help="omniweave: omnichannel marketing platform.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(help="Path to omniweave.toml.")] = None,
    home: Annotated[Path | None, typer.Option(help="Home folder (default $OMNIWEAVE_HOME or ./.omniweave).")] = None,
) -> None:
    from omniweave.privacy.masking import install_log_masking
    from omniweave.settings import load_settings

    install_log_masking()  # no plain e-mail or phone number in a log line (docs/privacy.md)
    # --home also says where to look for <home>/omniweave.toml, as $OMNIWEAVE_HOME does
    ctx.obj = load_settings(config_file=config, home=str(home) if home is not None else None)


def main() -> None:
    try:
        app()
    except OmniweaveError as exc:
        from omniweave.shells.cli.common import err_console

        err_console.print(f"error: {exc}", style="red", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
