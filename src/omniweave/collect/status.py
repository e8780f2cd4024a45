"""How far the loader is behind the collector: the inbox's last sequence number and the loader's position.

The collector's `GET /health` (shells/api/system.py) reports it next to the committer's and the loader
process's own state, so that a monitor sees a loader that fell behind or stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

from omniweave.collect.loader import LOADER
from omniweave.runtime import Runtime


@dataclass(frozen=True)
class InboxProgress:
    """The inbox's newest sequence number, the loader's saved position, and the gap between them."""

    last_seq: int
    loader_position: int

    @property
    def lag(self) -> int:
        return self.last_seq - self.loader_position

    def to_dict(self) -> dict[str, int]:
        return {"last_seq": self.last_seq, "loader_position": self.loader_position, "lag": self.lag}


def inbox_progress(runtime: Runtime) -> InboxProgress:
    """Read both numbers from the operational store (an unknown loader is at position 0)."""
    last_seq = runtime.store.max_seq()
    state = runtime.store.consumers().get(LOADER)
    return InboxProgress(last_seq, state.position if state else 0)
