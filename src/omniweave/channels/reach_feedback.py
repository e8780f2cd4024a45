"""Send feedback of the push, webhook, print and ads channels: the dispatcher's outcomes as events.

| channel | provider took it | the send died |
|---|---|---|
| push | Push Sent (the push service queued it) | Push Failed (+ Push Subscription Dropped on 404/410, push/service.py) |
| webhook | Webhook Delivered (the receiver answered 2xx) | Webhook Failed |
| print | Letter Sent (in a print batch; Letter Delivered follows on the drop date) | Letter Failed |
| ads | Audience Member Added / Audience Member Removed | Audience Sync Failed |

Each carries the reason (failures) or the provider id, and the usual properties (channel,
address, send_key, person_id, campaign, message_name); messageIds are deterministic (name + send
key), so a repeated outcome is one event.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from omniweave.channels.feedback import SOURCE, event_for
from omniweave.channels.port import Delivered, Outcome, Terminal
from omniweave.collect.emit import emit
from omniweave.runtime import Runtime
from omniweave.storage.ops.ledger import LedgerRow

REACH_CHANNELS = ("push", "webhook", "print", "ads")
SENT = {"push": "Push Sent", "webhook": "Webhook Delivered", "print": "Letter Sent"}
FAILED = {"push": "Push Failed", "webhook": "Webhook Failed", "print": "Letter Failed", "ads": "Audience Sync Failed"}


def _sent_name(row: LedgerRow) -> str:
    if row.channel != "ads":
        return SENT[row.channel]
    try:
        op = orjson.loads(row.content).get("op")
    except (orjson.JSONDecodeError, AttributeError):
        op = None
    return "Audience Member Removed" if op == "remove" else "Audience Member Added"


def reach_feedback(
    runtime: Runtime, channel: str, clock: Callable[[], float] = time.time
) -> Callable[[LedgerRow, Outcome | None], None]:
    """A dispatcher `on_outcome` emitting the events of `channel` (one of REACH_CHANNELS) in the table above."""

    def on_outcome(row: LedgerRow, outcome: Outcome | None) -> None:
        if row.channel != channel:
            return
        extra: dict[str, object]
        if isinstance(outcome, Delivered):
            name, extra = _sent_name(row), {"provider_id": outcome.provider_id}
        elif row.status == "dead" and isinstance(outcome, Terminal | None):
            name, extra = FAILED[channel], {"reason": row.reason}
        else:
            return
        event = event_for(
            name,
            channel=row.channel,
            address=row.to_address,
            at=clock(),
            send_key=row.key,
            person_id=row.person_id,
            campaign=row.campaign,
            message_name=row.message_name,
            properties=extra,
        )
        emit(runtime.store, SOURCE, [event])

    return on_outcome
