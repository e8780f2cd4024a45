"""Delivery status notifications (RFC 3464): which recipients bounced, hard or soft (pure).

A DSN is a `multipart/report; report-type=delivery-status` mail: a human part, a
`message/delivery-status` part (one block of per-message fields, then one block per recipient with
`Final-Recipient`, `Action`, `Status`, `Diagnostic-Code`), and usually the original message or its
headers (`message/rfc822`, `text/rfc822-headers`), whose `Message-ID` names our send.

`parse_dsn(raw)` returns one `DsnRecipient` per recipient whose action is `failed` or `delayed`:
status 5.x.x is a hard bounce, 4.x.x a soft one. Anything that is not a DSN raises InputError saying
what was expected.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass
from email.message import Message as MimeMessage
from email.policy import compat32

from omniweave.errors import InputError

_STATUS = re.compile(r"^\s*([245])\.\d{1,3}\.\d{1,3}")
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
MAX_DSN_BYTES = 1_000_000


@dataclass(frozen=True)
class DsnRecipient:
    """One recipient of a DSN: address, action, status (`5.1.1`), hard or soft, the diagnostic, the
    original Message-ID (when the DSN carries it)."""

    address: str
    action: str
    status: str
    bounce_type: str
    diagnostic: str
    original_message_id: str | None

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _address(value: str) -> str:
    """`rfc822; Ann@Example.com` -> `ann@example.com`."""
    text = value.split(";", 1)[1] if ";" in value else value
    return text.strip().strip("<>").strip().lower()


def _original_message_id(report: MimeMessage) -> str | None:
    for part in report.walk():
        kind = part.get_content_type()
        headers: MimeMessage | None = None
        if kind == "message/rfc822":
            inner = part.get_payload()
            first = inner[0] if isinstance(inner, list) and inner else None
            headers = first if isinstance(first, MimeMessage) else None
        elif kind == "text/rfc822-headers":
            payload = part.get_payload(decode=True)
            text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(part.get_payload())
            headers = email.message_from_string(text, policy=compat32)
        if isinstance(headers, MimeMessage):
            found = _MESSAGE_ID.search(str(headers.get("Message-ID", "")))
            if found:
                return found.group(0)
    return None


def _blocks(report: MimeMessage) -> list[MimeMessage]:
    for part in report.walk():
        if part.get_content_type() == "message/delivery-status":
            payload = part.get_payload()
            if isinstance(payload, list):
                return [b for b in payload if isinstance(b, MimeMessage)]
            text = payload if isinstance(payload, str) else ""
            return [email.message_from_string(chunk, policy=compat32) for chunk in re.split(r"\r?\n\r?\n", text)]
    return []


def parse_dsn(raw: bytes) -> list[DsnRecipient]:
    """The failed and delayed recipients of the DSN `raw` (the whole mail as bytes); see the module docstring."""
    if not raw.strip():
        raise InputError(
            "the body is empty; expected a DSN mail (multipart/report; report-type=delivery-status)", field="body"
        )
    if len(raw) > MAX_DSN_BYTES:
        raise InputError(f"the DSN is {len(raw)} bytes; at most {MAX_DSN_BYTES} are accepted", field="body")
    report = email.message_from_bytes(raw, policy=compat32)
    if report.get_content_type() == "message/rfc822":  # a DSN forwarded as an attachment
        inner = report.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], MimeMessage):
            report = inner[0]
    blocks = _blocks(report)
    if not blocks:
        raise InputError(
            f"not a delivery status notification: the mail is {report.get_content_type()} without a "
            "message/delivery-status part (expected multipart/report; report-type=delivery-status)",
            field="body",
        )
    original = _original_message_id(report)
    out = []
    for block in blocks:
        recipient = block.get("Final-Recipient") or block.get("Original-Recipient")
        if not recipient:
            continue
        action = str(block.get("Action", "")).strip().lower()
        status_text = str(block.get("Status", "")).strip()
        status = _STATUS.match(status_text)
        if action not in ("failed", "delayed") or status is None or status.group(1) == "2":
            continue
        out.append(
            DsnRecipient(
                address=_address(str(recipient)),
                action=action,
                status=status_text.split()[0],
                bounce_type="hard" if status.group(1) == "5" and action == "failed" else "soft",
                diagnostic=" ".join(str(block.get("Diagnostic-Code", "")).split())[:500],
                original_message_id=original,
            )
        )
    if not out and not any(b.get("Final-Recipient") for b in blocks):
        raise InputError("the delivery-status part names no Final-Recipient", field="body")
    return out
