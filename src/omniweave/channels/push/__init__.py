"""Web push: VAPID keys and headers (vapid.py), the adapter (adapter.py), a fake push service and
browser (fake.py), subscriptions and the channel wired to the store (service.py)."""

from omniweave.channels.push.adapter import WebPushChannel, push_payload
from omniweave.channels.push.vapid import VapidKeys, generate_vapid_keys, verified_claims

__all__ = ["VapidKeys", "WebPushChannel", "generate_vapid_keys", "push_payload", "verified_claims"]
