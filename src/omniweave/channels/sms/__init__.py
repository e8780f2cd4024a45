"""SMS and WhatsApp over a Twilio-style Messages REST API.

`encoding.py` counts segments (pure); `adapter.py` is the real adapter (httpx); `fake.py` a fake
Twilio provider shipped as an `httpx.MockTransport` handler for offline runs; `signature.py` the
`X-Twilio-Signature` check; `service.py` status callbacks and inbound messages (STOP/START/HELP).
"""
