"""Channels: adapters that speak real protocols behind one small port.

    send(message, idempotency_key) -> Delivered(provider_id) | Transient(retry_after, reason) | Terminal(reason)

`port.py` holds the port and the message shapes (pure); `retry.py` the back-off (pure). Each
channel is a folder of the same shape — `email/`, `sms/` (SMS and WhatsApp over a Twilio-style
API), `push/`, `webhook/`, `print/`, `ads/` — with a real adapter and a fake transport shipped in
the package, so that users and tests can run offline (like httpx's `MockTransport`).
`dispatch.py` writes the send ledger row *before* a channel is called (its key is the idempotency
key the channel carries), records every outcome, retries transients with back-off and keeps
terminal failures in a dead-letter list that can be replayed after a fix.
"""
