"""The e-mail channel: the MIME message (message.py), the SMTP adapter (adapter.py), the shipped fake (fake.py)."""

from omniweave.channels.email.adapter import AmbiguousDelivery, EmailChannel, SmtpTransport, reply_outcome
from omniweave.channels.email.fake import OutboxTransport
from omniweave.channels.email.message import RenderedEmail, build_email, message_id, render_email

__all__ = [
    "AmbiguousDelivery",
    "EmailChannel",
    "OutboxTransport",
    "RenderedEmail",
    "SmtpTransport",
    "build_email",
    "message_id",
    "render_email",
    "reply_outcome",
]
