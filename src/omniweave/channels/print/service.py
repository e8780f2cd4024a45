"""Direct mail on a Runtime: the print channel under the home, flushing batches, and drop-date deliveries.

`open_print_channel(runtime)` is the channel writing to `<home>/<[channels.print] folder>`;
`flush_print_batch(runtime, batch)` writes a batch's PDF and CSV; `print_deliveries(runtime, today)`
reports every letter of every batch whose drop date has come as a "Letter Delivered" event (dated
the drop date). Its messageIds are deterministic (name + send key), so running it every day
reports each letter once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from omniweave.channels.feedback import SOURCE, event_for, event_name
from omniweave.channels.port import address_key
from omniweave.channels.print.adapter import PrintBatch, PrintChannel
from omniweave.collect.emit import emit
from omniweave.runtime import Runtime


def print_folder(runtime: Runtime) -> Path:
    """Where print files go: `[channels.print] folder` under the home (or that folder when absolute)."""
    folder = Path(runtime.settings.channels.print.folder)
    return folder if folder.is_absolute() else Path(runtime.settings.home) / folder


def open_print_channel(runtime: Runtime, *, clock: Callable[[], float] = time.time) -> PrintChannel:
    """The print channel of the runtime's settings."""
    return PrintChannel(print_folder(runtime), drop_days=runtime.settings.channels.print.drop_days, clock=clock)


def flush_print_batch(runtime: Runtime, batch: str, *, clock: Callable[[], float] = time.time) -> PrintBatch:
    """Write the PDF and CSV of `batch` (InputError when nothing is queued in it)."""
    return open_print_channel(runtime, clock=clock).flush(batch)


@dataclass(frozen=True)
class DeliveriesResult:
    """What `print_deliveries` did: the batches whose drop date has come, their letters, new events."""

    batches: tuple[str, ...]
    letters: int
    new_events: int

    def to_dict(self) -> dict[str, object]:
        return {"batches": list(self.batches), "letters": self.letters, "new_events": self.new_events}


def print_deliveries(runtime: Runtime, today: date | None = None) -> DeliveriesResult:
    """Report "Letter Delivered" for every letter whose batch's drop date is `today` or earlier (once each)."""
    day = today or datetime.now(UTC).date()
    due = open_print_channel(runtime).due(day)
    events = []
    for batch in due:
        dropped = datetime.combine(date.fromisoformat(batch.drop_date), datetime.min.time(), UTC).timestamp()
        for letter in batch.letters:
            events.append(
                event_for(
                    event_name("print", "Delivered"),
                    channel="print",
                    address=address_key("print", letter.to),
                    at=dropped,
                    send_key=letter.send_key,
                    person_id=letter.person_id,
                    campaign=letter.campaign,
                    message_name=letter.message_name,
                    properties={"batch": batch.batch, "n": letter.n, "drop_date": batch.drop_date},
                )
            )
    new = emit(runtime.store, SOURCE, events) if events else 0
    return DeliveriesResult(tuple(b.batch for b in due), len(events), new)
