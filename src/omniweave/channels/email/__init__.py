"""The e-mail channel: the MIME message (message.py), the SMTP adapter (adapter.py), the shipped fake (fake.py)."""

from omniweave.channels.email.adapter import AmbiguousDelivery, EmailChannel, SmtpTransport, reply_outcome
from omniweave.channels.email.fake import OutboxTransport
from omniweave.channels.email.message import build_email, message_id

__all__ = [
    "AmbiguousDelivery",
    "EmailChannel",
    "OutboxTransport",
    "SmtpTransport",
    "build_email",
    "message_id",
    "reply_outcome",
]
