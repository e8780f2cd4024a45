"""E-mail feedback as events: the dispatcher's outcomes and the link endpoints' facts (pure).

Names from the Segment e-mail spec, through `channels.feedback.event_for`:

| fact                                                   | event                                  |
|--------------------------------------------------------|----------------------------------------|
| the SMTP server accepted the message (250 after DATA)  | `Email Delivered` (email_id = Message-ID) |
| 5xx for the recipient (hard bounce), or a DSN 5.x.x    | `Email Bounced` bounce_type `hard`, suppressed |
| a recipient 4xx still failing when retries ran out     | `Email Bounced` bounce_type `soft`, suppressed |
| a DSN with 4.x.x (delayed)                             | `Email Bounced` bounce_type `soft`     |
| any other send that ended dead                         | `Email Failed` with the reason         |
| the tracked link was followed                          | `Email Link Clicked` (link_url)        |
| the open pixel was loaded                              | `Email Opened` (unreliable)            |
| the one-click or page unsubscribe                      | `Unsubscribed`                         |
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from omniweave.channels.email.adapter import SOFT_BOUNCE
from omniweave.channels.feedback import event_for
from omniweave.channels.port import Outcome, Terminal

if TYPE_CHECKING:
    from omniweave.storage.ops.ledger import LedgerRow


def is_soft_bounce(reason: str | None) -> bool:
    """Whether a ledger reason records a recipient's temporary refusal (SMTP 4xx to RCPT or DATA)."""
    return bool(reason) and SOFT_BOUNCE.search(reason or "") is not None


def row_event(row: LedgerRow, name: str, *, at: float, id_parts: tuple[Any, ...], **properties: Any) -> dict[str, Any]:
    """The event `name` about the send in ledger row `row` (properties with None values dropped)."""
    return event_for(
        name,
        channel=row.channel,
        address=row.to_address,
        at=at,
        send_key=row.key,
        person_id=row.person_id,
        campaign=row.campaign,
        message_name=row.message_name,
        properties={k: v for k, v in properties.items() if v is not None},
        id_parts=(row.key, *id_parts),
    )


def outcome_events(row: LedgerRow, outcome: Outcome | None) -> list[dict[str, Any]]:
    """The events of one dispatcher outcome for an e-mail row (the row as it is after the attempt).

    Retries, suppressed skips and ambiguous sends emit nothing: they are no fact about the recipient.
    """
    if row.channel != "email":
        return []
    at = row.updated_at
    if row.status == "delivered":
        return [row_event(row, "Email Delivered", at=at, id_parts=(), email_id=row.provider_id)]
    if row.status != "dead":
        return []
    attempt = (row.first_try_at, row.attempts)  # a replayed send that dies again is a new fact
    hard = isinstance(outcome, Terminal) and outcome.suppress
    if hard or is_soft_bounce(row.reason):
        return [
            row_event(
                row,
                "Email Bounced",
                at=at,
                id_parts=attempt,
                bounce_type="hard" if hard else "soft",
                reason=row.reason,
                suppressed=True,
                source="smtp",
            )
        ]
    return [row_event(row, "Email Failed", at=at, id_parts=attempt, reason=row.reason)]
