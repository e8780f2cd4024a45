"""The operational store's tables, one module per area, all on one `metadata`.

    keys.py       sources (write keys) and secret API keys (hashed)
    inbox.py      the durable, ordered feed of accepted events
    consumers.py  each inbox consumer's saved position
    imports.py    the log of file imports
    messages.py   the send ledger (`sends`) and the suppression list
    reach.py      push subscriptions, conversations (WhatsApp's 24 h), coupon pools and coupons
    journeys.py   journey versions, runs, waits, entries and step history
    policy.py     the policy engine's per-person lock rows and its decisions
    privacy.py    consent history, data-subject requests and receipts, suppressed identifiers
    access.py     secret-key scopes, disabled sources, users, sessions, the append-only audit log
    forms.py      sign-ups through forms waiting for their double opt-in, with the consent's evidence

Areas to come (consent, journeys, ledger, coupons, messages, audit, users) each get a module of
their own here, shaped like these: `sa.Table(...)` definitions on `metadata` from `.base`, a
docstring saying what a row is, and an import below. Every change to a table ships with an
Alembic revision in `storage/ops/migrations/versions/` (the store runs them when it opens);
`tests/storage/test_migrations.py` checks that the migrated schema equals these definitions.
"""

from omniweave.storage.ops.tables.access import api_key_scopes, audit_log, disabled_sources, sessions, users
from omniweave.storage.ops.tables.base import metadata
from omniweave.storage.ops.tables.consumers import consumers
from omniweave.storage.ops.tables.forms import form_signups
from omniweave.storage.ops.tables.imports import imports
from omniweave.storage.ops.tables.inbox import inbox
from omniweave.storage.ops.tables.journeys import (
    journey_entries,
    journey_runs,
    journey_steps,
    journey_versions,
    journey_waits,
)
from omniweave.storage.ops.tables.keys import secret_keys, sources
from omniweave.storage.ops.tables.messages import sends, suppressions
from omniweave.storage.ops.tables.policy import policy_decisions, policy_persons
from omniweave.storage.ops.tables.privacy import consent_history, privacy_blocked, privacy_receipts, privacy_requests
from omniweave.storage.ops.tables.reach import conversations, coupon_pools, coupons, push_subscriptions

__all__ = [
    "api_key_scopes",
    "audit_log",
    "disabled_sources",
    "sessions",
    "users",
    "consent_history",
    "consumers",
    "conversations",
    "coupon_pools",
    "coupons",
    "form_signups",
    "imports",
    "inbox",
    "journey_entries",
    "journey_runs",
    "journey_steps",
    "journey_versions",
    "journey_waits",
    "metadata",
    "policy_decisions",
    "policy_persons",
    "privacy_blocked",
    "privacy_receipts",
    "privacy_requests",
    "push_subscriptions",
    "secret_keys",
    "sends",
    "sources",
    "suppressions",
]
