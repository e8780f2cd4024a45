"""Events omniweave itself observes (a delivery, a click, a bounce, a STOP) go in like any other.

`emit(store, source, events)` validates each raw Segment event with `normalize_event`, stamps
`receivedAt`, and appends them to the inbox under the named internal source (created on first
use), so that the loader, live segments and journey triggers see them with no special case. A
caller gives each event a deterministic `messageId` (`events.normalize.deterministic_message_id`)
so that a retry or a replay of the same fact is dropped by the inbox's deduplication.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

from omniweave.events.normalize import normalize_event
from omniweave.storage.ops.store import OpStore

_Pending = list[tuple[OpStore, str, float, list[tuple[str, bytes]]]]
_BUFFER: ContextVar[_Pending | None] = ContextVar("omniweave_emit_buffer", default=None)


@contextmanager
def emitting_together() -> Iterator[None]:
    """Within the block, `emit` validates at once but appends at the end, one transaction per store and
    source (a batch of sends' feedback costs one commit instead of one per event)."""
    if _BUFFER.get() is not None:  # already inside one: the outer block writes
        yield
        return
    pending: _Pending = []
    token = _BUFFER.set(pending)
    try:
        yield
    finally:
        _BUFFER.reset(token)
    grouped: dict[tuple[int, str], tuple[OpStore, float, list[tuple[str, bytes]]]] = {}
    for store, source, received, rows in pending:
        _, _, kept = grouped.setdefault((id(store), source), (store, received, []))
        kept.extend(rows)
    for (_, source), (store, received, rows) in grouped.items():
        source_id = store.ensure_source(source)
        store.append([(source_id, message_id, received, payload) for message_id, payload in rows])


def emit(store: OpStore, source: str, events: Iterable[Mapping[str, Any]]) -> int:
    """Append `events` (raw Segment events) to the inbox as source `source`; returns how many were new
    (inside `emitting_together`: how many were accepted, written when the block ends).

    Raises EventError (naming the event's index and field) before anything is written when one is
    malformed, so a batch goes in whole or not at all.
    """
    received = time.time()
    at = datetime.fromtimestamp(received, UTC)
    rows = []
    for index, raw in enumerate(events):
        event = normalize_event(dict(raw), received_at=at, index=index)
        rows.append((event["messageId"], orjson.dumps(event)))
    if not rows:
        return 0
    pending = _BUFFER.get()
    if pending is not None:
        pending.append((store, source, received, rows))
        return len(rows)
    source_id = store.ensure_source(source)
    return store.append([(source_id, message_id, received, payload) for message_id, payload in rows])
