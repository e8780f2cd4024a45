"""The fake providers' HTTP/1.1 server (channels/sms/fake_server.py) on real sockets: keep-alive, pipelined
requests answered in order, Connection: close, refusals of what it does not speak; and FakeTwilio's ASGI
app under uvicorn answering the same as its own server."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import uvicorn

from omniweave.channels.sms import fake_server
from omniweave.channels.sms.fake import FakeTwilio

SID, TOKEN = "AC" + "d" * 32, "token-d"


def echo(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
    if path == "/boom":
        raise ValueError("the handler failed")
    return (
        200,
        {"content-type": "text/plain", "x-path": path},
        f"{method} {headers.get('x-n', '')} {body.decode()}".encode(),
    )


def read_answers(sock: socket.socket, count: int) -> list[bytes]:
    data = b""
    answers: list[bytes] = []
    while len(answers) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return answers
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.startswith(b"content-length")))
        while len(data) < length:
            data += sock.recv(65536)
        answers.append(head + b"\r\n\r\n" + data[:length])
        data = data[length:]
    return answers


def test_pipelined_requests_on_one_kept_alive_connection_are_answered_in_order():
    with fake_server.serve(echo) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        requests = b"".join(
            f"POST /m?q=1 HTTP/1.1\r\nHost: x\r\nX-N: {i}\r\nContent-Length: {len(str(i))}\r\n\r\n{i}".encode()
            for i in range(20)
        )
        for start in range(0, len(requests), 7):  # trickled: headers and bodies split across reads
            sock.sendall(requests[start : start + 7])
        answers = read_answers(sock, 20)
        assert [a.rsplit(b"\r\n\r\n", 1)[1] for a in answers] == [f"POST {i} {i}".encode() for i in range(20)]
        assert all(a.startswith(b"HTTP/1.1 200 OK\r\n") and b"x-path: /m" in a for a in answers)


def test_connection_close_bad_requests_and_a_failing_handler():
    with fake_server.serve(echo) as port:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            (answer,) = read_answers(sock, 1)
            assert b"connection: close" in answer and sock.recv(10) == b""  # then closed
        for bad, status in (
            (b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"411"),
            (b"POST /a HTTP/1.1\r\nContent-Length: many\r\n\r\n", b"400"),
            (b"GARBAGE\r\n\r\n", b"400"),
        ):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(bad)
                (answer,) = read_answers(sock, 1)
                assert answer.split(b" ")[1] == status and sock.recv(10) == b""
        answer = httpx.post(f"http://127.0.0.1:{port}/boom", content=b"x")
        assert answer.status_code == 500 and "ValueError: the handler failed" in answer.text


def test_the_asgi_app_under_uvicorn_answers_as_the_fakes_own_server():
    fake = FakeTwilio(account_sid=SID, auth_token=TOKEN)
    form = {"To": "+447700900123", "From": "+15005550006", "Body": "hello"}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(fake.asgi, host="127.0.0.1", port=port, lifespan="off", log_level="warning", interface="asgi3")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        path = f"/2010-04-01/Accounts/{SID}/Messages.json"
        via_asgi = httpx.post(f"http://127.0.0.1:{port}{path}", data=form, auth=(SID, TOKEN))
        with fake.serve() as api_base:
            own = httpx.post(f"{api_base}/Accounts/{SID}/Messages.json", data=form, auth=(SID, TOKEN))
            refused = httpx.post(f"{api_base}/Accounts/{SID}/Messages.json", data=form, auth=(SID, "wrong"))
    finally:
        server.should_exit = True
        thread.join(10)
    assert via_asgi.status_code == own.status_code == 201
    assert {k for k in via_asgi.json() if k != "sid"} == {k for k in own.json() if k != "sid"}
    assert via_asgi.json()["sid"] != own.json()["sid"] and len(fake.messages) == 2
    assert refused.status_code == 401 and refused.json()["code"] == 20003
