"""Signed webhooks: the adapter (adapter.py), the signature receivers check (signing.py), a fake receiver (fake.py)."""

from omniweave.channels.webhook.adapter import WebhookChannel
from omniweave.channels.webhook.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign, verify_signature

__all__ = ["IDEMPOTENCY_HEADER", "SIGNATURE_HEADER", "WebhookChannel", "sign", "verify_signature"]
