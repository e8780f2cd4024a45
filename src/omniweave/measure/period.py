"""One way to read the period options every measure takes (`--since`, `--until`, `since=` in the API).

A day (YYYY-MM-DD) or an ISO 8601 instant; an instant without a zone is UTC. An end given as a day
includes that whole day, so `--since 2026-06-01 --until 2026-06-30` is all of June.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from omniweave.errors import InputError


def parse_moment(text: str | None, field: str, *, end: bool = False) -> datetime | None:
    """The instant `text` names, in UTC (None for None); `end=True` moves a bare day to the next midnight,
    so that the period includes it. A bad value raises InputError naming `field`."""
    if text is None:
        return None
    raw = text.strip()
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise InputError(f"got {text!r}; expected a date (YYYY-MM-DD) or an ISO 8601 instant", field=field) from None
    parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    day_only = len(raw) == 10
    return parsed + timedelta(days=1) if end and day_only else parsed


def parse_day(text: str | None, field: str) -> date | None:
    """The day `text` names (YYYY-MM-DD; None for None). A bad value raises InputError naming `field`."""
    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"got {text!r}; expected a day such as 2026-03-01", field=field) from None
