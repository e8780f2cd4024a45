"""The committer: a helper process that validates events and group-commits them to the inbox.

Why a process: the server's event loop is one Python thread, and everything it does holds the
GIL. Validating events and writing them to SQLite in the same process (even on another thread)
takes that time away from answering HTTP; in a second process it runs on the machine's other
core. The server keeps what must happen before a request is accepted at all (the write key, the
rate limit, the body's size and encoding) and hands the body over; the committer parses and
validates it, commits the valid events of everything that arrived meanwhile in one transaction
(one fsync for many requests: group commit), and only then answers. The server sends a 200 only
after that answer, so an acknowledged event is durable.

The two talk over a Unix socket pair in frames: a little-endian u32 length, then records.

    server → committer, per request:  id u32, kind u8, received_at f64 (epoch seconds),
                                       len(source_id) u16, len(ip) u16, len(body) u32,
                                       source_id, ip, body (the JSON, already decompressed)
    committer → server, per frame:     commit seconds f64, then per request:
                                       id u32, status u16, accepted u32, len(errors) u32, errors
                                       (a JSON array of {index, field, reason}; empty if none)

Kinds: 0 is a batch body, 1… the single-event types in `KINDS`. Statuses: 200 (all stored), 400
(some or all items rejected; the valid ones are stored), 503 (not stored; retry).

If a group's transaction fails, its requests are committed one by one, so one bad request cannot
fail the others. If the committer dies, the requests waiting on it get a 503 (their events may or
may not be stored; a retry is safe, since the inbox dedupes by messageId) and the next request
starts a new committer.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from omniweave.adapters.childproc import settings_from_stdin, spawn
from omniweave.adapters.collector.body import parse_json
from omniweave.adapters.collector.intake import Row, batch_items, build_rows, single_item
from omniweave.errors import InputError, StoreError, TerminalStoreError, TransientStoreError
from omniweave.settings import Settings

log = logging.getLogger("omniweave.collector")

KINDS: tuple[str | None, ...] = (None, "track", "identify", "page", "screen", "group", "alias")
KIND_CODES = {kind: code for code, kind in enumerate(KINDS)}

_LENGTH = struct.Struct("<I")
_REQUEST = struct.Struct("<IBdHHI")
_GROUP = struct.Struct("<d")
_REPLY = struct.Struct("<IHII")
_NO_ERRORS = b""

Outcome = tuple[int, int, bytes]  # status, events accepted, errors (JSON array, or b"")


# --- the server side ------------------------------------------------------------------------

class Committer:
    """The server's handle on its committer process: `await commit(...)` returns once the
    request's events are durable (or rejected), with the outcome to answer."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._link: _Link | None = None
        self._connecting: asyncio.Future[_Link] | None = None
        self._accepting = True
        self.groups = 0
        self.requests = 0
        self.events = 0
        self.commit_seconds = 0.0
        self.restarts = 0

    async def commit(self, kind: str | None, received_ts: float, source_id: str, ip: str | None,
                     body: bytes) -> Outcome:
        link = self._link
        if link is None or link.closed or link.loop is not asyncio.get_running_loop():
            link = await self._connect()
        return await link.submit(KIND_CODES[kind], received_ts, source_id, ip or "", body)

    async def start(self) -> None:
        """Start the committer process now (otherwise the first request starts it)."""
        await self._connect()

    async def _connect(self) -> _Link:
        if not self._accepting:
            raise TerminalStoreError("the collector is shutting down")
        loop = asyncio.get_running_loop()
        pending = self._connecting
        if pending is None or pending.get_loop() is not loop:
            pending = self._connecting = loop.create_future()
            try:
                old = self._link
                if old is not None:
                    old.close()  # died, or belongs to another event loop (a bare TestClient)
                    self.restarts += 1
                self._link = await _Link.open(self, self.settings)
                pending.set_result(self._link)
            except BaseException as exc:
                pending.set_exception(TerminalStoreError(f"could not start the committer process: {exc}"))
                pending.exception()  # retrieved: later callers get it from their own await
                self._connecting = None
                raise
            return self._link
        link = await asyncio.shield(pending)
        if link.closed:  # died since: the next call starts another
            self._connecting = None
            return await self._connect()
        return link

    async def drain(self, timeout: float = 60.0) -> None:
        """Stop taking requests, let those in flight finish, and end the committer process."""
        self._accepting = False
        link = self._link
        if link is not None:
            await link.drain(timeout)

    def stop(self) -> None:
        """Kill the committer if it is still running (after `drain`, it is not)."""
        self._accepting = False
        if self._link is not None:
            self._link.kill()

    @property
    def pid(self) -> int | None:
        """The committer process's pid while one is running."""
        link = self._link
        return None if link is None or link.closed or link.process.poll() is not None else link.process.pid

    def _record(self, seconds: float, requests: int, events: int) -> None:
        self.groups += 1
        self.requests += requests
        self.events += events
        self.commit_seconds += seconds

    def stats(self) -> dict[str, float]:
        """Groups, requests and events committed so far, and the mean group size and commit time."""
        groups = max(self.groups, 1)
        return {
            "groups": self.groups,
            "requests": self.requests,
            "events": self.events,
            "requests_per_group": round(self.requests / groups, 1),
            "commit_ms": round(self.commit_seconds / groups * 1000, 2),
            "restarts": self.restarts,
        }


class _Link(asyncio.Protocol):
    """One committer process and the socket to it, bound to one event loop."""

    def __init__(self, owner: Committer, process: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop):
        self.owner = owner
        self.process = process
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[Outcome]] = {}
        self._outgoing: list[bytes] = []
        self._flush_scheduled = False
        self._incoming = bytearray()
        self._drained: asyncio.Future[None] | None = None

    @classmethod
    async def open(cls, owner: Committer, settings: Settings) -> _Link:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            code = "from omniweave.adapters.collector.committer import main; main()"
            process = spawn(code, settings, args=[str(theirs.fileno())], pass_fds=[theirs.fileno()])
        finally:
            theirs.close()
        loop = asyncio.get_running_loop()
        link = cls(owner, process, loop)
        await loop.create_unix_connection(lambda: link, sock=ours)
        return link

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self._incoming
        buffer += data
        while len(buffer) >= 4:
            (size,) = _LENGTH.unpack_from(buffer)
            if len(buffer) < 4 + size:
                return
            frame = bytes(buffer[4:4 + size])
            del buffer[:4 + size]
            self._answer(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiting:
            log.error("the committer process stopped with %d requests in flight", len(self._waiting))
        error = TransientStoreError("the committer process stopped; the events may or may not be stored")
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(error)
        self._waiting.clear()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # requests and answers
    def submit(self, kind: int, received_ts: float, source_id: str, ip: str, body: bytes) -> asyncio.Future[Outcome]:
        if self.closed:
            raise TransientStoreError("the committer process stopped")
        self._next_id = request_id = (self._next_id + 1) & 0xFFFFFFFF
        future: asyncio.Future[Outcome] = self.loop.create_future()
        self._waiting[request_id] = future
        source = source_id.encode()
        address = ip.encode()
        self._outgoing.append(_REQUEST.pack(request_id, kind, received_ts, len(source), len(address), len(body)))
        self._outgoing.append(source + address)
        self._outgoing.append(body)
        if not self._flush_scheduled:
            # one frame (and one write) for every request that arrives in this loop iteration
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._outgoing or self.transport is None or self.closed:
            return
        size = sum(map(len, self._outgoing))
        self._outgoing.insert(0, _LENGTH.pack(size))
        self.transport.writelines(self._outgoing)
        self._outgoing = []

    def _answer(self, frame: bytes) -> None:
        (seconds,) = _GROUP.unpack_from(frame)
        position = _GROUP.size
        end = len(frame)
        requests = events = 0
        waiting = self._waiting
        while position < end:
            request_id, status, accepted, size = _REPLY.unpack_from(frame, position)
            position += _REPLY.size
            errors = frame[position:position + size] if size else _NO_ERRORS
            position += size
            future = waiting.pop(request_id, None)
            requests += 1
            events += accepted
            if future is not None and not future.done():  # done: the client went away
                future.set_result((status, accepted, errors))
        self.owner._record(seconds, requests, events)

    # shutting down
    async def drain(self, timeout: float) -> None:
        """Wait for the answers in flight, then close the socket; the process exits on EOF."""
        deadline = time.monotonic() + timeout
        while self._waiting and not self.closed and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self.close()
        await asyncio.get_running_loop().run_in_executor(None, self._reap, max(1.0, deadline - time.monotonic()))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()

    def _reap(self, timeout: float) -> None:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# --- the committer process ------------------------------------------------------------------

def main() -> None:
    """Entry point of the committer process (started by `Committer`)."""
    settings, _ = settings_from_stdin()
    connection = socket.socket(fileno=int(sys.argv[-2]))
    from omniweave.adapters.opstore import OpStore

    store = OpStore(settings.resolved_database_url)
    # long-lived objects (modules, the store) need no rescanning; the per-request garbage is
    # freed by reference counting
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    try:
        serve(connection, store, settings.max_event_bytes)
    finally:
        store.close()
        connection.close()


def serve(connection: socket.socket, store: Any, max_event_bytes: int) -> None:
    """Answer frames until the server closes the socket: validate, commit, reply."""
    buffer = bytearray()
    while True:
        connection.setblocking(True)
        data = connection.recv(1 << 20)
        if not data:
            return
        buffer += data
        connection.setblocking(False)  # take everything that is already there: one group
        try:
            while chunk := connection.recv(1 << 20):
                buffer += chunk
        except BlockingIOError:
            pass
        requests = list(_requests(buffer))
        if requests:
            connection.setblocking(True)
            connection.sendall(_commit_group(requests, store, max_event_bytes))


Request = tuple[int, int, float, str, str, bytes]


def _requests(buffer: bytearray) -> Iterator[Request]:
    """The requests of every complete frame in `buffer` (consumed from it)."""
    while len(buffer) >= 4:
        (size,) = _LENGTH.unpack_from(buffer)
        if len(buffer) < 4 + size:
            return
        frame = bytes(buffer[4:4 + size])
        del buffer[:4 + size]
        position = 0
        while position < size:
            request_id, kind, received_ts, source_size, ip_size, body_size = _REQUEST.unpack_from(frame, position)
            position += _REQUEST.size
            source = frame[position:position + source_size].decode()
            position += source_size
            ip = frame[position:position + ip_size].decode()
            position += ip_size
            body = frame[position:position + body_size]
            position += body_size
            yield request_id, kind, received_ts, source, ip, body


def _validate(request: Request, max_event_bytes: int) -> tuple[list[Row], list[dict[str, object]]]:
    _, kind, received_ts, source_id, ip, body = request
    try:
        payload = parse_json(body)
        items = batch_items(payload) if kind == 0 else single_item(payload, KINDS[kind])  # type: ignore[arg-type]
    except InputError as exc:
        return [], [exc.as_dict()]
    intake = build_rows(
        items, source_id, received_at=datetime.fromtimestamp(received_ts, UTC), received_ts=received_ts,
        max_event_bytes=max_event_bytes, context_defaults={"ip": ip} if ip else None,
    )
    return intake.rows, intake.errors


def _commit_group(requests: list[Request], store: Any, max_event_bytes: int) -> bytes:
    """Validate every request, commit all their rows in one transaction, and build the reply."""
    validated = [_validate(request, max_event_bytes) for request in requests]
    started = time.perf_counter()
    failures: list[str | None] = [None] * len(requests)
    try:
        store.append([row for rows, _ in validated for row in rows])
    except Exception as exc:  # noqa: BLE001 - isolate the failing request(s), below
        log.warning("group commit of %d requests failed (%s); committing them one by one", len(requests), exc)
        for position, (rows, _) in enumerate(validated):
            try:
                store.append(rows)
            except Exception as single:  # noqa: BLE001 - reported to that request
                failures[position] = _describe(single)
    seconds = time.perf_counter() - started
    parts = [_GROUP.pack(seconds)]
    for request, (rows, errors), failure in zip(requests, validated, failures):
        if failure is not None:
            status, accepted = 503, 0
            errors = [{"index": None, "field": None, "reason": f"not stored, retry: {failure}"}]
        else:
            status, accepted = (400 if errors else 200), len(rows)
        encoded = orjson.dumps(errors) if errors else _NO_ERRORS
        parts.append(_REPLY.pack(request[0], status, accepted, len(encoded)))
        parts.append(encoded)
    payload = b"".join(parts)
    return _LENGTH.pack(len(payload)) + payload


def _describe(exc: BaseException) -> str:
    if isinstance(exc, StoreError):
        return str(exc)
    log.error("could not commit events to the inbox: %r", exc)
    return f"could not commit events to the inbox: {exc}"

