"""A lean HTTP/1.1 client for the provider adapters' hot path: kept-alive sockets behind httpx's shapes.

The adapters are written against `httpx` (requests, responses, its exception types, and its
`MockTransport`, with which every channel ships a fake). httpx costs several hundred microseconds of
CPU per request and urllib3 (over `http.client` and the `email` header parser) about 400 µs, which
caps a sender near 1,000 requests/s on two cores. `PooledClient.post` writes the request in one
`sendall` over a kept-alive socket and reads the answer with a small parser (status line, headers,
`Content-Length`, chunked or read-to-close bodies): a few tens of microseconds. It keeps httpx's call
shape, answers an `Answer` with the parts of `httpx.Response` the adapters read (status_code, headers,
text, json()) and raises httpx's exception types, so an adapter takes either client:

- a failure before the request went out (refused, DNS, connect timeout, no free connection) is
  `httpx.ConnectError` / `httpx.ConnectTimeout` (safe to retry);
- a failure after it may have gone out (read timeout, connection reset mid-answer, a garbled
  answer) is `httpx.ReadError` / `httpx.ReadTimeout` (the outcome is unknown: never resent blindly).

There are no automatic retries: a retry is the dispatcher's decision, under the ledger's key. A
kept-alive connection the server has closed while idle is noticed before it is reused (it reads as
ready) and replaced, so an idle timeout on the server's side is not an ambiguous send.

The pool holds up to `connections` sockets per host; a thread that finds them all busy waits for
one (up to the timeout). Socket I/O releases the GIL, so a few threads sharing the pool keep a few
requests in flight while the others build theirs.
"""

from __future__ import annotations

import base64
import contextlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

_MAX_HEAD = 64 * 1024  # bytes of status line + headers an answer may have
_NO_BODY = (204, 304)


class Headers(dict[str, str]):
    """An answer's headers: names in lower case, looked up in any case (what adapters read of httpx.Headers)."""

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


class Answer:
    """An HTTP answer with the parts of `httpx.Response` the adapters read: `status_code`, `headers`,
    `content`, `text`, `json()`, `is_success`, `request`. (Building an httpx.Response costs more CPU
    than the whole exchange on a kept-alive socket.)"""

    __slots__ = ("status_code", "headers", "content", "request", "_text")

    def __init__(self, status_code: int, headers: Headers, content: bytes, request: httpx.Request):
        self.status_code = status_code
        self.headers = headers
        self.content = content
        self.request = request
        self._text: str | None = None

    @property
    def text(self) -> str:
        """The body decoded with the Content-Type's charset (UTF-8 when none or unknown)."""
        if self._text is None:
            charset = "utf-8"
            for part in self.headers.get("content-type", "").split(";")[1:]:
                name, _, value = part.strip().partition("=")
                if name.lower() == "charset" and value:
                    charset = value.strip('"')
            try:
                self._text = self.content.decode(charset, "replace")
            except LookupError:
                self._text = self.content.decode("utf-8", "replace")
        return self._text

    def json(self) -> Any:
        """The body parsed as JSON (ValueError when it is not JSON)."""
        import orjson

        try:
            return orjson.loads(self.content)
        except orjson.JSONDecodeError as exc:  # a ValueError, as json.loads raises
            raise ValueError(f"the answer is not JSON: {exc}") from None

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def __repr__(self) -> str:
        return f"<Answer [{self.status_code}]>"


class _Broken(Exception):
    """The answer could not be read (closed early, garbled): the request may have been processed."""


class _Connection:
    """One kept-alive socket and the bytes read past the previous answer."""

    __slots__ = ("sock", "buffer")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = bytearray()

    def dropped(self) -> bool:
        """True when the idle socket reads as ready: the server closed it (or sent what nobody asked for)."""
        if self.buffer:
            return True
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        poller = select.poll()
        poller.register(self.sock, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))

    def _fill(self) -> bool:
        """Read more bytes into the buffer; False at the end of the stream."""
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise _Broken(f"the connection closed {size - len(self.buffer)} bytes before the body's end")
        out = bytes(self.buffer[:size])
        del self.buffer[:size]
        return out

    def _line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 2]
                return line
            if len(self.buffer) > _MAX_HEAD:
                raise _Broken("a line of the answer is longer than 64 KiB")
            if not self._fill():
                raise _Broken("the connection closed in the middle of the answer")

    def exchange(self, request: bytes, head_only: bool = False) -> tuple[int, list[tuple[str, str]], bytes, bool]:
        """Send `request`, read one answer: (status, headers, body, whether the connection can be reused)."""
        self.sock.sendall(request)
        while True:
            status, headers = self._head()
            if status >= 200 or status == 101:
                break  # 1xx interim answers (100 Continue, 103 Early Hints) come before the real one
        names = {name.lower(): value for name, value in headers}
        reusable = names.get("connection", "").lower() != "close"
        if head_only or status in _NO_BODY or 100 <= status < 200:
            return status, headers, b"", reusable
        if "chunked" in names.get("transfer-encoding", "").lower():
            return status, headers, self._chunked(), reusable
        length = names.get("content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                raise _Broken(f"the answer's Content-Length is not a number: {length!r}") from None
            return status, headers, self._take(size), reusable
        while self._fill():  # no length: the body runs to the end of the connection
            pass
        body = bytes(self.buffer)
        self.buffer.clear()
        return status, headers, body, False

    def _head(self) -> tuple[int, list[tuple[str, str]]]:
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self.buffer) > _MAX_HEAD:
                raise _Broken("the answer's headers are longer than 64 KiB")
            if not self._fill():
                raise _Broken("the connection closed before an answer" if not self.buffer else "a cut-off answer")
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        del self.buffer[: end + 4]
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise _Broken(f"not an HTTP answer: {lines[0][:80]!r}")
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise _Broken(f"a malformed header line in the answer: {line[:80]!r}")
            headers.append((name.strip(), value.strip()))
        if parts[0] == "HTTP/1.0":
            headers.append(("connection", "close"))  # we never ask a 1.0 server to keep it open
        return int(parts[1]), headers

    def _chunked(self) -> bytes:
        out = bytearray()
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _Broken(f"a malformed chunk size: {size_text[:20]!r}") from None
            if size == 0:
                while self._line():  # trailers, up to the empty line
                    pass
                return bytes(out)
            out += self._take(size)
            if self._take(2) != b"\r\n":
                raise _Broken("a chunk is not followed by CRLF")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class _HostPool:
    """The kept-alive connections to one (scheme, host, port), at most `size` open at once."""

    def __init__(self, scheme: str, host: str, port: int, size: int, timeout: float, tls: ssl.SSLContext | None):
        self.scheme, self.host, self.port = scheme, host, port
        self.size, self.timeout, self.tls = size, timeout, tls
        self.idle: list[_Connection] = []
        self.open = 0
        self.ready = threading.Condition(threading.Lock())

    def take(self) -> _Connection | None:
        """An idle connection, or None when the caller may open a new one (a slot is reserved for it)."""
        deadline = time.monotonic() + self.timeout
        with self.ready:
            while True:
                while self.idle:
                    conn = self.idle.pop()
                    if not conn.dropped():
                        return conn
                    conn.close()
                    self.open -= 1
                if self.open < self.size:
                    self.open += 1
                    return None
                left = deadline - time.monotonic()
                if left <= 0 or not self.ready.wait(left):
                    raise TimeoutError(f"no free connection to {self.host}:{self.port} within {self.timeout:g} s")

    def connect(self) -> _Connection:
        """A new connection (its slot was reserved by `take`); the slot is given back when it fails."""
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            self.give_back(None)
            raise
        return _Connection(sock)

    def give_back(self, conn: _Connection | None) -> None:
        """Return a connection to the pool (None or a closed one: free its slot)."""
        with self.ready:
            if conn is None:
                self.open -= 1
            else:
                self.idle.append(conn)
            self.ready.notify()

    def close(self) -> None:
        with self.ready:
            for conn in self.idle:
                conn.close()
            self.open -= len(self.idle)
            self.idle.clear()


class PooledClient:
    """`post` over up to `connections` kept-alive connections per host (HTTP/1.1, http or https)."""

    def __init__(self, *, timeout: float = 15.0, connections: int = 16, tls: ssl.SSLContext | None = None):
        """`tls`: the context https connections use (default: the system's CAs, hostnames checked)."""
        self.timeout = timeout
        self.connections = max(1, connections)
        self._pools: dict[tuple[str, str, int], _HostPool] = {}
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = tls
        self._requests: dict[str, httpx.Request] = {}  # one per URL: the responses' and the errors' `request`

    def _pool(self, scheme: str, host: str, port: int) -> _HostPool:
        key = (scheme, host, port)
        pool = self._pools.get(key)
        if pool is None:
            with self._lock:
                pool = self._pools.get(key)
                if pool is None:
                    tls = None
                    if scheme == "https":
                        if self._tls is None:
                            self._tls = ssl.create_default_context()
                        tls = self._tls
                    pool = self._pools[key] = _HostPool(scheme, host, port, self.connections, self.timeout, tls)
        return pool

    def _request_of(self, url: str) -> httpx.Request:
        request = self._requests.get(url)
        if request is None:
            request = httpx.Request("POST", url)
            if len(self._requests) < 1024:
                self._requests[url] = request
        return request

    def post(
        self,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        content: bytes | None = None,
        json: Any = None,
        auth: tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """POST a form (`data`), raw bytes (`content`) or JSON; the answer (status_code, headers, text, json())."""
        return self.request("POST", url, data=data, content=content, json=json, auth=auth, headers=headers)

    def request(
        self,
        method: str,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        content: bytes | None = None,
        json: Any = None,
        auth: tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """One request; see the module docstring for what each failure raises."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise httpx.UnsupportedProtocol(f"not an http(s) URL: {url!r}", request=self._request_of(url))
        host = parts.hostname
        port = parts.port or (443 if scheme == "https" else 80)
        if data is not None:
            body = urlencode(data).encode()
            kind: str | None = "application/x-www-form-urlencoded"
        elif json is not None:
            import orjson

            body, kind = orjson.dumps(json), "application/json"
        else:
            body, kind = content or b"", None
        sent = {"Host": parts.netloc.rpartition("@")[2], "User-Agent": "omniweave", "Accept": "*/*"}
        if kind is not None:
            sent["Content-Type"] = kind
        for name, value in (headers or {}).items():
            for existing in [k for k in sent if k.lower() == name.lower()]:
                del sent[existing]
            sent[name] = value
        if auth is not None:
            sent["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        sent["Content-Length"] = str(len(body))
        for name, value in sent.items():
            if any(c in name or c in value for c in "\r\n\0"):
                problem = f"the header {name!r} holds a line break or NUL"
                raise httpx.LocalProtocolError(problem, request=self._request_of(url))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if not target.isascii() or " " in target:
            target = quote(target, safe="/?&=:;@!$'()*+,%~-._")
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in sent.items()) + "\r\n"
        try:
            wire = head.encode("latin-1") + body
        except UnicodeEncodeError as exc:
            raise httpx.LocalProtocolError(f"a header is not latin-1: {exc}", request=self._request_of(url)) from None

        pool = self._pool(scheme, host, port)
        try:
            conn = pool.take() or pool.connect()
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port}: {exc}", request=self._request_of(url)) from exc
        except OSError as exc:  # refused, unreachable, DNS (socket.gaierror), TLS handshake
            raise httpx.ConnectError(f"connecting to {host}:{port}: {exc}", request=self._request_of(url)) from exc
        try:
            status, answer_headers, answer, reusable = conn.exchange(wire, head_only=method == "HEAD")
        except TimeoutError as exc:
            conn.close()
            pool.give_back(None)
            raise httpx.ReadTimeout(
                f"no answer from {host}:{port} within {self.timeout:g} s", request=self._request_of(url)
            ) from exc
        except (OSError, _Broken) as exc:
            conn.close()
            pool.give_back(None)
            raise httpx.ReadError(f"{host}:{port}: {exc}", request=self._request_of(url)) from exc
        if reusable:
            pool.give_back(conn)
        else:
            conn.close()
            pool.give_back(None)
        return Answer(status, Headers((k.lower(), v) for k, v in answer_headers), answer, self._request_of(url))

    def close(self) -> None:
        """Close every kept-alive connection."""
        with self._lock:
            pools = list(self._pools.values())
        for pool in pools:
            pool.close()
