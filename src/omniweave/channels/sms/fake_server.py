"""A small HTTP/1.1 server for the shipped fake providers: asyncio (uvloop when installed), keep-alive.

`serve(handle, host, port)` answers every request on a real socket with
`handle(method, path, lower-case headers, body) -> (status, headers, body)`, the same function the
fakes' `httpx.MockTransport` calls. It speaks what a provider's client sends: a request line,
headers, a `Content-Length` body (chunked uploads get 411 Length Required), kept-alive
connections (`Connection: close` or HTTP/1.0 closes after the answer) and pipelined requests, in
order. Compared with an ASGI app under uvicorn it costs a third of the CPU per request, which
matters when the fake shares two cores with the sender a benchmark measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import cast

Handler = Callable[[str, str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]

_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def answer_bytes(status: int, headers: dict[str, str], body: bytes, *, close: bool = False) -> bytes:
    """One HTTP/1.1 answer on the wire (Content-Length added; `Connection: close` when `close`)."""
    lines = [f"HTTP/1.1 {status} {_reason(status)}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items() if name.lower() != "content-length")
    lines.append(f"content-length: {len(body)}")
    if close:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Protocol(asyncio.Protocol):
    def __init__(self, handle: Handler, live: set[asyncio.Transport]):
        self.handle = handle
        self.live = live
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self.live.add(self.transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.live.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        out = bytearray()
        close = False
        while not close:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > _MAX_HEAD:
                    out += answer_bytes(431, {}, b"request headers too large", close=True)
                    close = True
                break
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                out += answer_bytes(400, {}, b"malformed request line", close=True)
                close = True
                break
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                out += answer_bytes(411, {}, b"send a Content-Length", close=True)
                close = True
                break
            try:
                length = int(headers.get("content-length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= _MAX_BODY:
                out += answer_bytes(400, {}, b"bad Content-Length", close=True)
                close = True
                break
            if len(self.buffer) < end + 4 + length:
                break  # the body is still coming
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            method, target, version = parts
            close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
            path = target.split("?", 1)[0]
            try:
                status, answer_headers, answer = self.handle(method, path, headers, body)
            except Exception as exc:  # noqa: BLE001 - a fake's bug becomes a 500 the client can see
                status, answer_headers, answer = 500, {}, f"{type(exc).__name__}: {exc}".encode()
            out += answer_bytes(status, answer_headers, answer, close=close)
        if out and self.transport is not None:
            self.transport.write(bytes(out))
        if close and self.transport is not None:
            self.transport.close()


@contextlib.contextmanager
def serve(handle: Handler, host: str = "127.0.0.1", port: int = 0) -> Iterator[int]:
    """Serve `handle` on `host:port` (0: a free port) in a thread while the block runs; yields the port."""
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []
    holder: list[asyncio.AbstractServer] = []
    live: set[asyncio.Transport] = set()
    ports: list[int] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            server = loop.run_until_complete(
                loop.create_server(lambda: _Protocol(handle, live), host, port, reuse_address=True)
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failure.append(exc)
            started.set()
            return
        holder.append(server)
        ports.append(int(server.sockets[0].getsockname()[1]))  # type: ignore[attr-defined]
        started.set()
        loop.run_forever()
        server.close()
        for transport in list(live):  # the kept-alive connections too, so nothing waits on them
            transport.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()

    thread = threading.Thread(target=run, name="fake-provider", daemon=True)
    thread.start()
    started.wait(10)
    if failure or not ports:
        raise RuntimeError(f"the fake provider did not start on {host}:{port}: {failure[0] if failure else 'timeout'}")
    bound = ports[0]
    try:
        yield bound
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
