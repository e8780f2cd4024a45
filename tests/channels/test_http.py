"""channels.http.PooledClient over real sockets: the httpx shapes the adapters read, and failures split into
'never sent' (retry) and 'maybe sent' (ambiguous)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from omniweave.channels.http import PooledClient
from omniweave.channels.sms.fake import FakeTwilio

SID, TOKEN = "AC" + "c" * 32, "secret-token"


@pytest.fixture
def twilio() -> Iterator[tuple[FakeTwilio, str]]:
    fake = FakeTwilio(account_sid=SID, auth_token=TOKEN)
    with fake.serve() as api_base:
        yield fake, f"{api_base}/Accounts/{SID}/Messages.json"


def test_a_form_post_with_basic_auth_and_headers(twilio):
    fake, url = twilio
    client = PooledClient(timeout=5, connections=2)
    answer = client.post(
        url,
        data={"To": "+447700900123", "From": "+15005550006", "Body": "Hé"},
        auth=(SID, TOKEN),
        headers={"I-Twilio-Idempotency-Token": "k1"},
    )
    assert answer.status_code == 201 and answer.json()["body"] == "Hé"
    assert answer.headers["content-type"] == "application/json"
    assert fake.messages[0]["idempotency_token"] == "k1"
    refused = client.post(url, data={"To": "+447700900123"}, auth=(SID, "wrong"))
    assert refused.status_code == 401 and refused.json()["code"] == 20003
    client.close()


def test_a_closed_port_is_never_sent_and_a_silent_server_maybe_was():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        PooledClient(timeout=2).post(f"http://127.0.0.1:{closed}/x", data={"a": "b"})

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True).start()
    try:
        with pytest.raises(httpx.ReadTimeout):
            PooledClient(timeout=0.5).post(f"http://127.0.0.1:{silent.getsockname()[1]}/x", data={"a": "b"})
    finally:
        for conn in accepted:
            conn.close()
        silent.close()
