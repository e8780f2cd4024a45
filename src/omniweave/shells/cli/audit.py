"""CLI commands of access and audit: `omniweave audit` (the audit log) and `omniweave users ...`.

Every change made here is recorded in the audit log as `cli:<operating-system user>` from `cli@<host>`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from omniweave.shells.cli.common import OutputFormat, console, opened
from omniweave.shells.render import emit, grid

users_app = typer.Typer(help="Dashboard users and their roles (owner, marketer, analyst, privacy_officer).")


def _when(seconds: float | None) -> str:
    return "" if seconds is None else datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M")


def audit(
    ctx: typer.Context,
    action: Annotated[str | None, typer.Option(help="An action (key.create) or a prefix ending in '.' (key.).")] = None,
    actor: Annotated[str | None, typer.Option(help="Who: user:<email>, key:<prefix> (<name>), cli:<user>.")] = None,
    since: Annotated[datetime | None, typer.Option(help="Entries from this time on (UTC).")] = None,
    limit: Annotated[int, typer.Option(help="The newest entries, at most (1 to 1000).")] = 50,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
) -> None:
    """The audit log, newest first: who did what to what, when and from where."""
    from omniweave.privacy.service.audit import entries

    start = since.replace(tzinfo=since.tzinfo or UTC).timestamp() if since is not None else None
    with opened(ctx) as rt:
        page = entries(rt, action=action, actor=actor, since=start, limit=limit)
    records = [entry.to_dict() for entry in page.entries]
    rows = [[e.seq, _when(e.at), e.actor, e.action, e.target, e.origin] for e in page.entries]
    title = f"audit log: {len(rows)} entries" + (" (older ones left out: raise --limit)" if page.more else "")
    view = grid(["seq", "when (UTC)", "who", "action", "target", "from"], rows, title=title)
    emit(console, format, document=page.to_dict(), records=records, views=[view])


@users_app.command("add")
def users_add(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The user's e-mail address (their sign-in name).")],
    name: Annotated[str, typer.Option(help="The user's name.")],
    role: Annotated[str, typer.Option(help="owner, marketer, analyst or privacy_officer.")],
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, help="12 to 256 characters.")
    ],
) -> None:
    """Create a dashboard user (the password is stored as an argon2 hash)."""
    from omniweave.privacy.service.access import create_user
    from omniweave.privacy.service.audit import cli_actor

    with opened(ctx) as rt:
        user = create_user(rt, email, name, role, password, actor=cli_actor())
    console.print(f"user {user.email} created with role {user.role} (id {user.id})")


@users_app.command("list")
def users_list(
    ctx: typer.Context,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
) -> None:
    """Every dashboard user with role and state."""
    from omniweave.privacy.service.access import list_users

    with opened(ctx) as rt:
        found = list_users(rt)
    rows = [[u.email, u.name, u.role, _when(u.created_at), "disabled" if u.disabled_at else "active"] for u in found]
    view = grid(["e-mail", "name", "role", "created (UTC)", "state"], rows, title=f"{len(rows)} users")
    emit(console, format, document=[u.to_dict() for u in found], views=[view])


@users_app.command("role")
def users_role(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="The user's e-mail or id.")],
    role: Annotated[str, typer.Argument(help="owner, marketer, analyst or privacy_officer.")],
) -> None:
    """Give a user another role."""
    from omniweave.privacy.service.access import set_role
    from omniweave.privacy.service.audit import cli_actor

    with opened(ctx) as rt:
        changed = set_role(rt, user, role, actor=cli_actor())
    console.print(f"{changed.email} is now {changed.role}")


@users_app.command("disable")
def users_disable(ctx: typer.Context, user: Annotated[str, typer.Argument(help="The user's e-mail or id.")]) -> None:
    """Disable a user and end their sessions."""
    from omniweave.privacy.service.access import disable_user
    from omniweave.privacy.service.audit import cli_actor

    with opened(ctx) as rt:
        changed = disable_user(rt, user, actor=cli_actor())
    console.print(f"{changed.email} disabled")


def register(app: typer.Typer) -> None:
    """Add `audit` and the `users` commands to the root app."""
    app.command("audit")(audit)
    app.add_typer(users_app, name="users")
