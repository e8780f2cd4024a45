"""A fake channel shipped in the package: records what it is asked to send, answers as scripted.

Use it offline (a demo, a notebook) or in tests of what sits above the port. `FakeChannel("sms")`
delivers everything; `FakeChannel("sms", script=[Transient("503"), Delivered("p1")])` answers in
turn and then delivers. `sent` holds (message, idempotency_key) of every call, in order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from omniweave.channels.port import Delivered, Message, Outcome


class FakeChannel:
    """An in-memory channel: every call is kept in `sent`; answers follow `script`, then `Delivered`."""

    def __init__(self, name: str, script: Iterable[Outcome] = ()):
        self.name = name
        self.script = list(script)
        self.sent: list[tuple[Message, str]] = []
        self._ids = itertools.count(1)

    def send(self, message: Message, idempotency_key: str) -> Outcome:
        """Record the call and give the next scripted answer (a fresh provider id once the script is done)."""
        self.sent.append((message, idempotency_key))
        if self.script:
            return self.script.pop(0)
        return Delivered(f"fake-{self.name}-{next(self._ids)}")

    def delivered_keys(self) -> list[str]:
        """The idempotency keys of every call, in order (a key twice means a message went twice)."""
        return [key for _, key in self.sent]
