"""Masking identifiers for logs and error messages: enough to tell two apart, not enough to read them.

`mask("ann.smith@example.com")` → `a***@e***.com`; `mask("+447700900123")` → `+44********23`;
`mask_name("Ann Smith")` → `A** S****`. `mask_text` masks every e-mail address and phone-like number
inside a longer message; `install_log_masking` does that to every log line of the process.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from omniweave.events.masking import PHONE, digit_count, mask, mask_email, mask_phone

__all__ = ["install_log_masking", "mask", "mask_email", "mask_name", "mask_phone", "mask_text"]

_EMAIL = re.compile(r"[^@\s'\"<>(),;:]+@[^@\s'\"<>(),;:]+\.[A-Za-z]{2,}")
_PHONE = PHONE


def mask_name(value: str) -> str:
    """`Ann Smith` → `A** S****`: each word's first letter kept."""
    return " ".join(word[:1] + "*" * (len(word) - 1) for word in value.split())


def mask_text(text: str) -> str:
    """`text` with every e-mail address and phone-like number in it masked."""
    text = _EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    return _PHONE.sub(lambda m: mask_phone(m.group(0)) if _digits(m.group(0)) >= 9 else m.group(0), text)


_digits = digit_count


def _masked_record_factory(make: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is the logging module's to report
            return record
        record.msg, record.args = mask_text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_text(logging.Formatter().formatException(record.exc_info))
        return record

    factory._omniweave_masking = True  # type: ignore[attr-defined]
    return factory


def install_log_masking() -> None:
    """Mask e-mail addresses and phone numbers in every log line of this process, whichever stage or
    library logs it (the message and a traceback's text), by wrapping the log record factory. The shells
    call it at start-up; calling it again does nothing."""
    current = logging.getLogRecordFactory()
    if not getattr(current, "_omniweave_masking", False):
        logging.setLogRecordFactory(_masked_record_factory(current))
