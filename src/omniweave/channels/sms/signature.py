"""Twilio's request signature: `X-Twilio-Signature` = base64(HMAC-SHA1(auth token, URL + params)).

The signed text is the full URL Twilio requested (scheme, host, path and query string, exactly as
configured in the `StatusCallback` or the number's webhook) followed by every POST parameter,
sorted by name, each written as name + value with no separator. Pure: used by the webhook service
to check callbacks and by the shipped fake provider to sign the callbacks it makes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """The signature Twilio puts on a POST of `params` to `url` for an account with `auth_token`."""
    text = url + "".join(f"{name}{value}" for name, value in sorted(params, key=lambda kv: kv[0]))
    digest = hmac.new(auth_token.encode(), text.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def signature_ok(auth_token: str, url: str, params: Iterable[tuple[str, str]], signature: str | None) -> bool:
    """True when `signature` is Twilio's for this request (constant-time comparison); False when absent."""
    if not auth_token or not signature:
        return False
    expected = twilio_signature(auth_token, url, params)
    return hmac.compare_digest(expected.encode(), signature.strip().encode())
