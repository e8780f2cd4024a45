"""The privacy side of `form_signups` (storage/ops/tables/forms.py), for the stages that may not import forms.

`privacy` sits below `forms` in the layers, so an export, a deletion, a suppression or a retention run
reaches the sign-ups through these functions, which know the table and nothing of forms:

- `signups_of(conn, needles)`: a person's sign-ups with their consent evidence (an export);
- `anonymous_ids_of(conn, needles)`: the page visitor ids their sign-ups carried (the `Form Submitted`
  event holds one but no e-mail: a deletion made before identity joined them must still find it);
- `anonymise(conn, needles)`: the personal columns of the person's sign-ups cleared. The row stays, with
  its form, placement, locale, status, times, the words of each purpose and how it was confirmed, so
  `omniweave forms list` keeps counting every sign-up by form and status; a pending one becomes `expired`
  (its link can no longer confirm anyone);
- `expire_pending(conn, needles, now)`: a suppressed person's pending sign-ups expired the same way, so a
  late confirmation link records no consent and sends no event for them;
- `expire_due(conn, now)` and `anonymise_before(conn, cutoff)`: retention (pending sign-ups past their time;
  every sign-up older than `[privacy] retention_days.form_signups` days).

`needles` are the lower-cased identifiers of `privacy.subjects.needles`; a sign-up is the person's when its
e-mail, phone (E.164, as forms keep it) or visitor id is one of them, compared as a whole value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import sqlalchemy as sa

from omniweave.storage.ops.tables.forms import form_signups

PERSONAL = ("email", "phone", "anonymous_id", "submitted_ip", "user_agent", "confirmed_ip")
"""The columns that say who signed up; everything else of a row is kept for the counts."""
CLEARED: dict[str, Any] = {name: None for name in PERSONAL}


def _mine(needles: Iterable[str]) -> sa.ColumnElement[bool]:
    texts = sorted({n.lower() for n in needles if n}) or ["-"]
    return sa.or_(
        *(sa.func.lower(form_signups.c[name]).in_(texts) for name in ("email", "phone", "anonymous_id")),
    )


def signups_of(conn: sa.Connection, needles: Iterable[str]) -> list[dict[str, Any]]:
    """The person's sign-ups, oldest first, each with its evidence (`reference` form:<id>, the words of each
    purpose as shown, when and from where it was submitted and confirmed)."""
    rows = conn.execute(
        sa.select(form_signups).where(_mine(needles)).order_by(form_signups.c.submitted_at, form_signups.c.id)
    ).all()
    out = []
    for row in rows:
        values = dict(row._mapping)
        values["reference"] = f"form:{values['id']}"
        values["purposes"] = orjson.loads(values["purposes"]) if values["purposes"] else []
        out.append(values)
    return out


def anonymous_ids_of(conn: sa.Connection, needles: Iterable[str]) -> set[str]:
    """The visitor ids of the sign-ups whose e-mail or phone is one of `needles`."""
    texts = sorted({n.lower() for n in needles if n}) or ["-"]
    found = conn.execute(
        sa.select(form_signups.c.anonymous_id)
        .where(sa.or_(sa.func.lower(form_signups.c.email).in_(texts), sa.func.lower(form_signups.c.phone).in_(texts)))
        .where(form_signups.c.anonymous_id.is_not(None))
        .distinct()
    ).scalars()
    return {str(v) for v in found if v}


def anonymise(conn: sa.Connection, needles: Iterable[str]) -> tuple[int, int]:
    """Clear the personal columns of the person's sign-ups; a pending one is expired too. Returns how many
    kept their status (confirmed, expired) and how many pending ones were expired."""
    mine = _mine(list(needles))
    expired = conn.execute(
        sa.update(form_signups).where(mine, form_signups.c.status == "pending").values(status="expired", **CLEARED)
    ).rowcount
    kept = conn.execute(sa.update(form_signups).where(mine).values(**CLEARED)).rowcount
    return int(kept or 0), int(expired or 0)


def expire_pending(conn: sa.Connection, needles: Iterable[str]) -> int:
    """Expire the person's pending sign-ups (personal columns cleared); returns how many."""
    result = conn.execute(
        sa.update(form_signups)
        .where(_mine(list(needles)), form_signups.c.status == "pending")
        .values(status="expired", **CLEARED)
    )
    return int(result.rowcount or 0)


def expire_due(conn: sa.Connection, now: float) -> int:
    """Expire every pending sign-up past its `expires_at` (as `omniweave forms expire` does)."""
    result = conn.execute(
        sa.update(form_signups)
        .where(form_signups.c.status == "pending", form_signups.c.expires_at < now)
        .values(status="expired", **CLEARED)
    )
    return int(result.rowcount or 0)


def anonymise_before(conn: sa.Connection, cutoff: float) -> int:
    """Clear the personal columns of every sign-up submitted before `cutoff` that still has any (a pending
    one is expired); returns how many rows changed."""
    holds = sa.or_(*(form_signups.c[name].is_not(None) for name in PERSONAL))
    old = sa.and_(form_signups.c.submitted_at < cutoff, holds)
    expired = conn.execute(
        sa.update(form_signups).where(old, form_signups.c.status == "pending").values(status="expired", **CLEARED)
    ).rowcount
    rest = conn.execute(sa.update(form_signups).where(old).values(**CLEARED)).rowcount
    return int(expired or 0) + int(rest or 0)
