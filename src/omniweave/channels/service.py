"""Channels on a Runtime: the configured adapters, a dispatcher whose outcomes become events, and the
feedback operations behind the link endpoints (unsubscribe, click, open) and inbound bounces.

- `open_channels(runtime, fake=False)`: every enabled channel of `[channels]` (with `fake=True`,
  every channel's shipped fake transport instead: offline runs, demos, tests);
- `dispatcher_for(runtime, channels)`: a `Dispatcher` on the runtime's ledger whose `on_outcome`
  emits feedback events through `collect.emit` and suppresses an e-mail address whose 4xx refusals
  outlasted the retries;
- `unsubscribe(runtime, token)`, `click(runtime, token)`, `open(runtime, token)`: a signed link
  followed (links.py); each emits its Segment e-mail spec event (`Unsubscribed`, `Email Link
  Clicked`, `Email Opened`); a forged or malformed token raises `UnknownLink`;
- `bounce_from_dsn(runtime, raw)`: a DSN (RFC 3464) posted to the inbound endpoint: 5.x.x
  suppresses the address (`Email Bounced` hard), 4.x.x is a soft bounce (the third one of an
  address suppresses it).

Channel engineers add their constructor to `open_channels` and their feedback to `_FEEDBACK`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from omniweave.channels import links
from omniweave.channels.ads.service import open_ads_channel
from omniweave.channels.dispatch import Dispatcher, SendResult
from omniweave.channels.email import EmailChannel, OutboxTransport, SmtpTransport
from omniweave.channels.email.adapter import SmtpPool
from omniweave.channels.email.dsn import parse_dsn
from omniweave.channels.email.events import is_soft_bounce, outcome_events, row_event
from omniweave.channels.feedback import SOURCE, event_for
from omniweave.channels.port import Channel, Outcome, address_key
from omniweave.channels.print.service import open_print_channel
from omniweave.channels.push.service import open_push_channel
from omniweave.channels.reach_feedback import reach_feedback
from omniweave.channels.sms.service import messaging_channel, send_feedback
from omniweave.channels.webhook.service import open_webhook_channel
from omniweave.collect.emit import emit, emitting_together
from omniweave.errors import ConfigError, InputError
from omniweave.runtime import Runtime
from omniweave.storage.ops.ledger import STATUSES, Ledger, LedgerRow
from omniweave.storage.ops.tables.reach import soft_bounces

SOFT_BOUNCE_LIMIT = 3
"""Soft bounces (DSN 4.x.x) of one address before it is suppressed."""


class UnknownLink(InputError):
    """A link token that is forged, altered, malformed or made for another purpose (the API's 404)."""

    def __init__(self, purpose: str):
        super().__init__(f"unknown or forged {purpose} link", field="token")


# --- channels and the dispatcher ------------------------------------------------------------------


def email_channel(runtime: Runtime, *, fake: bool = False) -> EmailChannel:
    """The e-mail channel of `[channels.email]`: SMTP (password from its variable), or the shipped outbox."""
    settings = runtime.settings.channels.email
    if fake:
        transport: OutboxTransport | SmtpPool = OutboxTransport()
    else:
        password = os.environ.get(settings.password_env) if settings.username else None
        if settings.username and not password:
            raise ConfigError(
                f"[channels.email] username is {settings.username!r} but ${settings.password_env} is not set; "
                "put the SMTP password in that variable (or clear username for a server without AUTH)"
            )
        transport = SmtpPool(lambda: SmtpTransport.from_settings(settings, password), max(1, settings.connections))
    return EmailChannel(
        settings,
        public_url=runtime.settings.channels.public_url,
        key=links.signing_key(runtime),
        transport=transport,
    )


def open_channels(runtime: Runtime, *, fake: bool = False) -> dict[str, Channel]:
    """The enabled channels of the settings by name (`fake`: each one's shipped fake transport)."""
    config = runtime.settings.channels
    out: dict[str, Channel] = {}
    if config.email.enabled or fake:
        out["email"] = email_channel(runtime, fake=fake)
    for name in ("sms", "whatsapp"):
        if getattr(config, name).enabled or fake:
            out[name] = messaging_channel(runtime, name, fake=fake)
    if config.push.enabled or fake:
        out["push"] = open_push_channel(runtime, fake=fake)
    if config.webhook.enabled or fake:
        out["webhook"] = open_webhook_channel(runtime, fake=fake)
    if config.print.enabled or fake:
        out["print"] = open_print_channel(runtime)
    if config.ads.enabled or fake:
        out["ads"] = open_ads_channel(runtime, fake=fake)
    return out


def email_feedback(runtime: Runtime) -> Callable[[LedgerRow, Outcome | None], None]:
    """The dispatcher `on_outcome` of e-mail: emit the outcome's events; a send that died of recipient
    4xx refusals (retries exhausted) suppresses the address ("4xx retried, then suppressed")."""
    ledger = Ledger(runtime.store.engine)

    def on_outcome(row: LedgerRow, outcome: Outcome | None) -> None:
        if row.channel != "email":
            return
        if row.status == "dead" and is_soft_bounce(row.reason):
            ledger.suppress("email", row.to_address, "bounce", f"soft bounces until the retries ran out: {row.reason}")
        events = outcome_events(row, outcome)
        if events:
            emit(runtime.store, SOURCE, events)

    return on_outcome


_FEEDBACK: dict[str, Callable[[Runtime, Callable[[], float]], Callable[[LedgerRow, Outcome | None], None]]] = {
    "email": lambda runtime, clock: email_feedback(runtime),  # stamped with the row's time: the dispatcher's clock
    "sms": lambda runtime, clock: send_feedback(runtime, clock, only="sms"),
    "whatsapp": lambda runtime, clock: send_feedback(runtime, clock, only="whatsapp"),
    "push": lambda runtime, clock: reach_feedback(runtime, "push", clock),
    "webhook": lambda runtime, clock: reach_feedback(runtime, "webhook", clock),
    "print": lambda runtime, clock: reach_feedback(runtime, "print", clock),
    "ads": lambda runtime, clock: reach_feedback(runtime, "ads", clock),
}
"""Per channel, the factory of its dispatcher feedback (`on_outcome`), given the dispatcher's clock."""


def dispatcher_for(runtime: Runtime, channels: Mapping[str, Channel], **options: Any) -> Dispatcher:
    """A Dispatcher over the runtime's ledger and `channels` whose outcomes become feedback events.

    `options` go to the Dispatcher (`policies`, `clock`, `rng`); the feedback events are stamped with its
    `clock` (default the wall clock), so a caller on a clock of its own (the journey engine in a simulation or
    the demo's world) gets them at its time.
    """
    clock = options.get("clock", time.time)
    handlers = [factory(runtime, clock) for name, factory in _FEEDBACK.items() if name in channels]

    def on_outcomes(batch: list[tuple[LedgerRow, Outcome | None]]) -> None:
        with emitting_together():  # one inbox commit for the whole batch's feedback
            for row, outcome in batch:
                for handler in handlers:
                    handler(row, outcome)

    return Dispatcher(Ledger(runtime.store.engine), channels, on_outcomes=on_outcomes, **options)


# --- links followed -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkResult:
    """What following a signed link did: the send, the address, the target (a click), whether it was new."""

    purpose: str
    channel: str
    address: str | None
    send_key: str | None
    target: str | None = None
    changed: bool = False

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _payload(runtime: Runtime, purpose: str, token: str) -> dict[str, Any]:
    payload = links.verify(runtime, purpose, token)
    if payload is None:
        raise UnknownLink({"u": "unsubscribe", "c": "click", "o": "open"}.get(purpose, purpose))
    return payload


def _row(runtime: Runtime, key: object) -> LedgerRow | None:
    return Ledger(runtime.store.engine).get(key) if isinstance(key, str) and key else None


def unsubscribe(runtime: Runtime, token: str, *, now: float | None = None) -> LinkResult:
    """Suppress the address of an unsubscribe token on its channel and emit `Unsubscribed` (once).

    Raises UnknownLink for a forged or malformed token. Called by the one-click POST (RFC 8058) and
    the page's button; never by a GET.
    """
    payload = _payload(runtime, "u", token)
    channel, key = str(payload.get("ch") or "email"), payload.get("k")
    address = address_key(channel, str(payload.get("a") or ""))
    if not address:
        raise UnknownLink("unsubscribe")
    at = time.time() if now is None else now
    row = _row(runtime, key)
    changed = Ledger(runtime.store.engine).suppress(
        channel, address, "unsubscribe", f"unsubscribe link of send {key}" if key else "unsubscribe link"
    )
    event = event_for(
        "Unsubscribed",
        channel=channel,
        address=address,
        at=at,
        send_key=str(key) if key else None,
        person_id=row.person_id if row else None,
        campaign=row.campaign if row else None,
        message_name=row.message_name if row else None,
        properties={"method": "link"},
        id_parts=("unsubscribe", address, str(key or "")),
    )
    emit(runtime.store, SOURCE, [event])
    return LinkResult("unsubscribe", channel, address, str(key) if key else None, changed=changed)


def _minute(at: float) -> int:
    return int(at // 60)


def click(runtime: Runtime, token: str, *, now: float | None = None) -> LinkResult:
    """The target of a click token (an http(s) URL, only ever the signed one) and an `Email Link Clicked`.

    Clicks of the same link of the same send within one minute are one event (a double click, a
    reload). Raises UnknownLink for a forged token or a target that is not http(s).
    """
    payload = _payload(runtime, "c", token)
    target = payload.get("t")
    if not isinstance(target, str) or not target.lower().startswith(("http://", "https://")):
        raise UnknownLink("click")
    at = time.time() if now is None else now
    row = _row(runtime, payload.get("k"))
    if row is not None:
        event = row_event(row, "Email Link Clicked", at=at, id_parts=("click", target, _minute(at)), link_url=target)
        emit(runtime.store, SOURCE, [event])
    return LinkResult(
        "click", "email", row.to_address if row else None, row.key if row else None, target, row is not None
    )


def record_open(runtime: Runtime, token: str, *, now: float | None = None) -> LinkResult:
    """An open pixel loaded: `Email Opened` (one per send and minute). Unreliable by nature: image
    blocking hides opens, Apple Mail Privacy Protection loads every pixel. Raises UnknownLink."""
    payload = _payload(runtime, "o", token)
    at = time.time() if now is None else now
    row = _row(runtime, payload.get("k"))
    if row is not None:
        emit(runtime.store, SOURCE, [row_event(row, "Email Opened", at=at, id_parts=("open", _minute(at)))])
    return LinkResult("open", "email", row.to_address if row else None, row.key if row else None, None, row is not None)


open = record_open  # noqa: A001 - the name the API and the docs use: `service.open(runtime, token)`


# --- inbound bounces ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BounceResult:
    """What a DSN did: per recipient its address, hard or soft, status, whether it is now suppressed."""

    recipients: list[dict[str, object]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"recipients": self.recipients}


def _count_soft_bounce(runtime: Runtime, address: str, reason: str, at: float) -> int:
    """One more soft bounce of `address`; returns its count so far."""
    table = soft_bounces
    with runtime.store.engine.begin() as conn:
        where = (table.c.channel == "email", table.c.address == address)
        found = conn.execute(sa.select(table.c.count).where(*where)).first()
        if found is None:
            try:
                conn.execute(
                    table.insert().values(
                        channel="email", address=address, count=1, last_reason=reason[:1000], last_at=at
                    )
                )
                return 1
            except sa.exc.IntegrityError:
                pass
        conn.execute(
            table.update().where(*where).values(count=table.c.count + 1, last_reason=reason[:1000], last_at=at)
        )
        return int(conn.execute(sa.select(table.c.count).where(*where)).scalar_one())


def bounce_from_dsn(runtime: Runtime, raw: bytes, *, now: float | None = None) -> BounceResult:
    """Apply a DSN mail (RFC 3464) to the suppression list and emit `Email Bounced` per recipient.

    5.x.x (failed) suppresses the address at once (hard); 4.x.x is a soft bounce, and the
    `SOFT_BOUNCE_LIMIT`-th soft bounce of an address suppresses it. The send is found by the
    original Message-ID when the DSN carries it. Raises InputError when `raw` is not a DSN.
    """
    at = time.time() if now is None else now
    ledger = Ledger(runtime.store.engine)
    events, out = [], []
    for rcpt in parse_dsn(raw):
        address = address_key("email", rcpt.address)
        if not address or "@" not in address:
            continue
        row = ledger.find_by_provider_id("email", rcpt.original_message_id) if rcpt.original_message_id else None
        reason = f"DSN {rcpt.status} {rcpt.action}" + (f": {rcpt.diagnostic}" if rcpt.diagnostic else "")
        if rcpt.bounce_type == "hard":
            suppressed = True
            ledger.suppress("email", address, "bounce", reason[:1000])
            count = None
        else:
            count = _count_soft_bounce(runtime, address, reason, at)
            suppressed = count >= SOFT_BOUNCE_LIMIT
            if suppressed:
                ledger.suppress("email", address, "bounce", f"{count} soft bounces; last: {reason}"[:1000])
        events.append(
            event_for(
                "Email Bounced",
                channel="email",
                address=address,
                at=at,
                send_key=row.key if row else None,
                person_id=row.person_id if row else None,
                campaign=row.campaign if row else None,
                message_name=row.message_name if row else None,
                properties={
                    "bounce_type": rcpt.bounce_type,
                    "reason": reason,
                    "status": rcpt.status,
                    "suppressed": suppressed,
                    "source": "dsn",
                    "email_id": rcpt.original_message_id,
                },
                id_parts=("dsn", address, rcpt.status, rcpt.action, rcpt.original_message_id or "", count or 0),
            )
        )
        out.append(
            {**rcpt.to_dict(), "address": address, "suppressed": suppressed, "send_key": row.key if row else None}
        )
    if events:
        emit(runtime.store, SOURCE, events)
    return BounceResult(out)


# --- the ledger seen from the shells: what was sent, dead letters, replay, due retries -------------


@dataclass(frozen=True)
class SendsReport:
    """Sends in the ledger: how many in each status, and the rows asked for (newest last)."""

    counts: dict[str, int]
    rows: tuple[dict[str, object], ...]

    def to_dict(self) -> dict[str, object]:
        return {"counts": dict(self.counts), "rows": [dict(r) for r in self.rows]}


def list_sends(runtime: Runtime, *, status: str | None = None, limit: int = 50) -> SendsReport:
    """The ledger's counts per status and up to `limit` of its rows (of `status` when given: `dead` is
    the dead-letter list), without their content."""
    if status is not None and status not in STATUSES:
        raise InputError(f"unknown send status {status!r}; expected one of {', '.join(STATUSES)}", field="status")
    if limit < 1:
        raise InputError(f"limit must be at least 1, got {limit}", field="limit")
    ledger = Ledger(runtime.store.engine)
    rows = ledger.rows(status)[-limit:]
    return SendsReport(ledger.counts(), tuple(row.to_dict() for row in rows))


@dataclass(frozen=True)
class WorkResult:
    """What a replay or a retry run did: rows put back to pending, attempts made and their statuses."""

    requeued: int
    attempted: int
    statuses: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        return {"requeued": self.requeued, "attempted": self.attempted, "statuses": dict(self.statuses)}


def _worked(requeued: int, results: list[SendResult]) -> WorkResult:
    statuses: dict[str, int] = {}
    for result in results:
        statuses[result.status] = statuses.get(result.status, 0) + 1
    return WorkResult(requeued, len(results), statuses)


def replay_sends(
    runtime: Runtime, keys: Sequence[str] | None = None, *, include_ambiguous: bool = False, fake: bool = False
) -> WorkResult:
    """Put dead sends (all, or `keys`; with `include_ambiguous` also those whose outcome is unknown) back to
    pending after a fix, and attempt them once now through the configured channels."""
    dispatcher = dispatcher_for(runtime, open_channels(runtime, fake=fake))
    requeued = dispatcher.replay(list(keys) if keys else None, include_ambiguous=include_ambiguous)
    return _worked(requeued, dispatcher.run_due(limit=max(requeued, 1)) if requeued else [])


def work_sends(runtime: Runtime, *, wait: float = 0.0, fake: bool = False) -> WorkResult:
    """Attempt every send whose time has come (pending ones and retries); with `wait` > 0, keep going
    for up to that many seconds while retries are waiting (the worker a deployment runs on a timer)."""
    dispatcher = dispatcher_for(runtime, open_channels(runtime, fake=fake))
    results = dispatcher.drain(timeout=wait) if wait > 0 else dispatcher.run_due()
    return _worked(0, results)
