"""channels.http.PooledClient over real sockets: the httpx shapes the adapters read, and failures split into
'never sent' (retry) and 'maybe sent' (ambiguous)."""

from __future__ import annotations

import socket
import threading
import time
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


class RawServer:
    """A loopback HTTP/1.1 server that answers each request with raw bytes from `answer(n, request)`, where n
    counts requests from 1; `close_after(n)` says whether it then closes the connection (without saying so)."""

    def __init__(self, answer, close_after=lambda n: False):  # type: ignore[no-untyped-def]
        self.answer, self.close_after = answer, close_after
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests: list[bytes] = []
        self.connections = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                body, buffer = buffer[:length], buffer[length:]
                with self._lock:
                    self.requests.append(head + b"\r\n\r\n" + body)
                    n = len(self.requests)
                conn.sendall(self.answer(n, head + b"\r\n\r\n" + body))
                if self.close_after(n):
                    return

    def close(self) -> None:
        self.listener.close()


def test_chunked_interim_and_read_to_close_answers_are_read_whole():
    chunked = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    server = RawServer(
        lambda n, _: chunked if n < 3 else b"HTTP/1.1 202 Accepted\r\nX-Id: 9\r\n\r\nto the end", lambda n: n >= 3
    )
    client = PooledClient(timeout=5, connections=1)
    for _ in range(2):
        answer = client.post(server.url + "/hook", content=b"{}", headers={"Content-Type": "application/json"})
        assert answer.status_code == 200 and answer.text == "hello world"
    last = client.post(server.url + "/hook", json={"a": 1})
    assert last.status_code == 202 and last.text == "to the end" and last.headers["x-id"] == "9"
    assert server.connections == 1  # kept alive across the three
    assert b"POST /hook HTTP/1.1" in server.requests[2] and server.requests[2].endswith(b'{"a":1}')
    assert b"Content-Type: application/json" in server.requests[2]
    client.close()
    server.close()


def test_a_connection_the_server_closed_while_idle_is_replaced_not_an_error():
    ok = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    server = RawServer(lambda n, _: ok, close_after=lambda n: True)  # closes after every answer, silently
    client = PooledClient(timeout=5, connections=1)
    for i in range(5):
        time.sleep(0.02)  # the server's close reaches us while the connection is idle
        answer = client.post(server.url + "/x", data={"n": str(i)})
        assert answer.status_code == 201 and answer.content == b"ok"
    assert len(server.requests) == 5 and server.connections == 5
    client.close()
    server.close()


def test_a_cut_off_answer_or_garbage_is_a_maybe_sent_read_error():
    server = RawServer(
        lambda n, _: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort" if n == 1 else b"SMTP? 220\r\n\r\n",
        lambda n: True,
    )
    client = PooledClient(timeout=5)
    with pytest.raises(httpx.ReadError, match="closed 5 bytes before"):
        client.post(server.url + "/x", data={"a": "b"})
    with pytest.raises(httpx.ReadError, match="not an HTTP answer"):
        client.post(server.url + "/x", data={"a": "b"})
    assert len(server.requests) == 2
    server.close()


def test_a_line_break_in_a_header_is_refused_before_anything_is_sent():
    server = RawServer(lambda n, _: b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    client = PooledClient(timeout=5)
    with pytest.raises(httpx.LocalProtocolError, match="I-Twilio-Idempotency-Token"):
        client.post(server.url + "/x", data={"a": "b"}, headers={"I-Twilio-Idempotency-Token": "k\r\nX-Evil: 1"})
    with pytest.raises(httpx.UnsupportedProtocol):
        client.post("ftp://example.org/x", data={"a": "b"})
    assert server.requests == [] and server.connections == 0
    server.close()


def test_threads_share_a_small_pool_and_every_request_is_answered_once(twilio):
    fake, url = twilio
    client = PooledClient(timeout=5, connections=2)
    errors: list[BaseException] = []

    def work(w: int) -> None:
        try:
            for i in range(25):
                answer = client.post(
                    url,
                    data={"To": "+447700900123", "From": "+15005550006", "Body": f"{w}-{i}"},
                    auth=(SID, TOKEN),
                    headers={"I-Twilio-Idempotency-Token": f"{w}-{i}"},
                )
                assert answer.status_code == 201, answer.text
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(m["Body"] for m in fake.messages) == sorted(f"{w}-{i}" for w in range(6) for i in range(25))
    open_now = sum(pool.open for pool in client._pools.values())
    assert open_now <= 2
    client.close()


def test_the_answer_reads_like_an_httpx_response():
    latin = "café".encode("latin-1")
    server = RawServer(
        lambda n, _: (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=ISO-8859-1\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\n"
            + latin
            if n == 1
            else b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 5\r\n\r\n<html"
        )
    )
    client = PooledClient(timeout=5)
    first = client.post(server.url + "/a", data={"a": "b"})
    assert first.text == "café" and first.is_success and first.headers.get("RETRY-AFTER") == "7"
    assert "retry-after" in first.headers and first.headers["Content-Type"].startswith("text/plain")
    assert str(first.request.url) == server.url + "/a"
    second = client.post(server.url + "/a", data={"a": "b"})
    assert second.status_code == 502 and not second.is_success and second.headers.get("x-none") is None
    with pytest.raises(ValueError, match="not JSON"):
        second.json()
    client.close()
    server.close()


def _self_signed(tmp_path):  # type: ignore[no-untyped-def]
    """A certificate for 127.0.0.1 / localhost and its key, as files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def test_https_keeps_the_connection_and_checks_the_certificate(tmp_path):
    import ssl

    cert_file, key_file = _self_signed(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_file, key_file)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    seen: list[bytes] = []
    connections: list[int] = []

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            connections.append(1)
            try:
                conn = server_tls.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                raw.close()  # the client refused our certificate
                continue
            with conn:
                buffer = b""
                while True:
                    while b"\r\n\r\n" not in buffer:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        buffer += chunk
                    if b"\r\n\r\n" not in buffer:
                        break
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    while len(buffer) < length:
                        buffer += conn.recv(65536)
                    seen.append(buffer[:length])
                    buffer = buffer[length:]
                    conn.sendall(
                        b'HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"sid":"S"}'
                    )

    threading.Thread(target=serve, daemon=True).start()
    trusting = ssl.create_default_context(cafile=str(cert_file))
    client = PooledClient(timeout=5, connections=1, tls=trusting)
    for i in range(3):
        answer = client.post(f"https://localhost:{port}/2010-04-01/x", data={"n": str(i)})
        assert answer.status_code == 201 and answer.json() == {"sid": "S"}
    assert seen == [b"n=0", b"n=1", b"n=2"] and len(connections) == 1
    client.close()  # the one-connection-at-a-time server goes back to accepting
    with pytest.raises(httpx.ConnectError):  # the system's CAs do not know this certificate: never sent
        PooledClient(timeout=5).post(f"https://localhost:{port}/x", data={"n": "3"})
    assert len(seen) == 3
    listener.close()
