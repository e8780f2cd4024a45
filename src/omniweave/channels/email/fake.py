"""An in-memory outbox for the e-mail channel, shipped in the package for offline runs and tests.

`EmailChannel(..., transport=OutboxTransport())` builds every mail exactly as the SMTP transport
would and keeps it in `outbox` (parsed `EmailMessage`s, in order) instead of sending it. Addresses
can be scripted to answer like a real server: `OutboxTransport(replies={"gone@example.com": (550,
"5.1.1 no such user")})` refuses that recipient with a hard bounce, `(451, "4.2.0 try later")` with
a soft one, so journeys and bounce handling can be exercised without a server.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

from omniweave.channels.email.adapter import reply_outcome
from omniweave.channels.port import Delivered, Outcome


class OutboxTransport:
    """Keeps every delivered mail in `outbox`; scripted `replies` refuse chosen recipients at RCPT."""

    def __init__(self, replies: Mapping[str, tuple[int, str]] | None = None):
        self.replies = {k.strip().lower(): v for k, v in (replies or {}).items()}
        self.outbox: list[EmailMessage] = []
        self.envelopes: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def deliver(self, sender: str, recipient: str, data: bytes, message_id: str) -> Outcome:
        """Refuse as scripted for `recipient`, else keep the parsed message and deliver it."""
        scripted = self.replies.get(recipient.strip().lower())
        if scripted is not None:
            return reply_outcome("RCPT", scripted[0], scripted[1], message_id)
        parsed = message_from_bytes(data, policy=default)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            self.outbox.append(parsed)
            self.envelopes.append((sender, recipient))
        return Delivered(message_id)

    def to(self, address: str) -> list[EmailMessage]:
        """The mails delivered to `address`, in order."""
        wanted = address.strip().lower()
        return [m for m, (_, rcpt) in zip(self.outbox, self.envelopes, strict=True) if rcpt.lower() == wanted]

    def close(self) -> None:
        """Nothing to release."""
