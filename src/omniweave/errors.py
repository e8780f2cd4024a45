"""The exception tree of omniweave.

OmniweaveError                      root of everything omniweave raises on purpose
├── ConfigError                     settings could not be built (names every place looked in)
├── InputError (also ValueError)    bad input from a user: record, field and what was expected
│   └── EventError                  one Segment event failed validation
├── AuthError                       unknown or missing write key / secret key
└── StoreError                      a store failed
    ├── TransientStoreError         worth retrying (lock timeout, connection drop)
    └── TerminalStoreError          not worth retrying
"""

from __future__ import annotations


class OmniweaveError(Exception):
    """Root of every error omniweave raises on purpose."""


class ConfigError(OmniweaveError):
    """Settings could not be built."""


class InputError(OmniweaveError, ValueError):
    """Bad input: says which record, which field and what was expected."""

    def __init__(self, reason: str, *, field: str | None = None, record: int | str | None = None):
        self.reason = reason
        self.field = field
        self.record = record
        where = []
        if record is not None:
            where.append(f"record {record}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {reason}" if where else reason)

    def as_dict(self) -> dict[str, object]:
        return {"index": self.record, "field": self.field, "reason": self.reason}


class EventError(InputError):
    """A Segment event failed validation."""


class AuthError(OmniweaveError):
    """Unknown or missing credentials."""


class StoreError(OmniweaveError):
    """A store failed."""


class TransientStoreError(StoreError):
    """A store failure worth retrying."""


class TerminalStoreError(StoreError):
    """A store failure not worth retrying."""
