"""Ad audiences as a channel: hashed keys (keys.py), file and HTTP sync (adapter.py), a fake API (fake.py)."""

from omniweave.channels.ads.adapter import FileAudienceSync, HttpAudienceSync
from omniweave.channels.ads.keys import audience_message, key_for

__all__ = ["FileAudienceSync", "HttpAudienceSync", "audience_message", "key_for"]
