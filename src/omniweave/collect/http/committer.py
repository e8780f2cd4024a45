"""The committer: a helper process that validates events and group-commits them to the inbox.

Why a process: the server's event loop is one Python thread, and everything it does holds the
GIL. Validating events and writing them to SQLite in the same process (even on another thread)
takes that time away from answering HTTP; in a second process it runs on the machine's other
core. The server keeps what must happen before a request is accepted at all (the write key, the
rate limit, the body's size and encoding) and hands the body over; the committer parses and
validates it, commits the valid events of everything that arrived meanwhile in one transaction
(one fsync for many requests: group commit), and only then answers. The server sends a 200 only
after that answer, so an acknowledged event is durable.

The two talk over a Unix socket pair in frames (little-endian). The server sends one frame per
event-loop iteration with every request that arrived in it; the committer answers each frame
with one frame, and answers "all stored" in a few bytes when that is what happened:

    server → committer:  length u32, frame id u32, then per request: kind u8, received_at f64
                         (epoch seconds), len(source_id) u16, len(ip) u16, len(body) u32,
                         source_id, ip, body (the JSON, already decompressed)
    committer → server:  length u32, frame id u32, commit seconds f64, requests u32, events u32,
                         all-stored u8; unless all stored, per request (in order): status u16,
                         accepted u32, len(errors) u32, errors (a JSON array of {index, field,
                         reason}; empty if none)

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
import os
import queue
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from omniweave.collect.childproc import settings_from_stdin, spawn
from omniweave.collect.http.body import parse_json
from omniweave.collect.http.intake import Row, batch_items, build_rows, single_item
from omniweave.errors import InputError, StoreError, TerminalStoreError, TransientStoreError
from omniweave.settings import Settings

log = logging.getLogger("omniweave.collector")

KINDS: tuple[str | None, ...] = (None, "track", "identify", "page", "screen", "group", "alias")
KIND_CODES = {kind: code for code, kind in enumerate(KINDS)}

_LENGTH = struct.Struct("<I")
_FRAME = struct.Struct("<II")  # length, frame id
_REQUEST = struct.Struct("<BdHHI")
_ANSWER = struct.Struct("<IIdIIB")  # length, frame id, commit seconds, requests, events, all stored
_OUTCOME = struct.Struct("<HII")
_NO_ERRORS = b""

# Requests per frame at most. Smaller frames let the committer validate and commit one part of
# a busy loop iteration while the server is still reading the rest; the answers come back
# sooner, and under a steady load of concurrent clients that is what throughput depends on.
MAX_FRAME_REQUESTS = 8

Outcome = tuple[int, int, bytes]  # status, events accepted, errors (JSON array, or b"")
STORED: Outcome = (200, 0, _NO_ERRORS)  # what `outcome` gives for a request whose events are all stored


class _FrameFuture(asyncio.Future[list[Outcome] | None]):
    """Awaited by every request of one frame. A request that is cancelled (its client gone, the
    server stopping) must not cancel the others: cancelling this future is refused, and the
    cancelled request's task gets its CancelledError when the frame is answered."""

    def cancel(self, msg: Any = None) -> bool:
        return False


def outcome(answer: list[Outcome] | None, index: int) -> Outcome:
    """The outcome of the request at `index` of a frame, from the frame's answer."""
    return STORED if answer is None else answer[index]


# --- the server side ------------------------------------------------------------------------


class Committer:
    """The server's handle on its committer process: `await commit(...)` returns once the
    request's events are durable (or rejected), with the outcome to answer."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._link: _Link | None = None
        self._connecting: asyncio.Future[_Link] | None = None
        self._accepting = True
        self.frames = 0
        self.requests = 0
        self.events = 0
        self.commit_seconds = 0.0
        self.restarts = 0

    async def commit(
        self, kind: str | None, received_ts: float, source_id: str, ip: str | None, body: bytes
    ) -> Outcome:
        """Hand a request's body over; returns its outcome once its events are durable."""
        submitted = self.submit(kind, received_ts, source_id, ip, body)
        if submitted is None:
            await self._connect()
            submitted = self.submit(kind, received_ts, source_id, ip, body)
            if submitted is None:
                raise TransientStoreError("the committer process stopped")
        future, index = submitted
        return outcome(await future, index)

    def submit(
        self, kind: str | None, received_ts: float, source_id: str, ip: str | None, body: bytes
    ) -> tuple[asyncio.Future[list[Outcome] | None], int] | None:
        """The fast path of `commit`, for callers that await the frame themselves: the frame's
        future and the request's index in it, or None if the committer must be (re)started."""
        link = self._link
        if link is None or link.closed or link.loop is not asyncio.get_running_loop():
            return None
        return link.submit(KIND_CODES[kind], received_ts, source_id, ip or "", body)

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
        self.frames += 1
        self.requests += requests
        self.events += events
        self.commit_seconds += seconds

    def stats(self) -> dict[str, float]:
        """Frames (one per event-loop iteration with requests), requests and events answered so far,
        the mean frame size, the mean time of the commit that stored a frame, how often the committer
        process had to be started again, and its pid."""
        frames = max(self.frames, 1)
        return {
            "frames": self.frames,
            "requests": self.requests,
            "events": self.events,
            "requests_per_frame": round(self.requests / frames, 1),
            "commit_ms": round(self.commit_seconds / frames * 1000, 2),
            "restarts": self.restarts,
            "pid": self.pid or 0,  # the committer process (0 until started): the same pid means no restart
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
        self._waiting: dict[int, _FrameFuture] = {}  # frame id → its future, once sent
        self._frame: _FrameFuture | None = None  # the frame being filled in this loop iteration
        self._frame_size = 0
        self._flush_scheduled = False
        self._outgoing: list[bytes] = []
        self._incoming = bytearray()

    @classmethod
    async def open(cls, owner: Committer, settings: Settings) -> _Link:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            code = "from omniweave.collect.http.committer import main; main()"
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
        while len(buffer) >= _ANSWER.size:
            size, frame_id, seconds, requests, events, all_stored = _ANSWER.unpack_from(buffer)
            if len(buffer) < 4 + size:
                return
            answer = None if all_stored else _outcomes(bytes(buffer[_ANSWER.size : 4 + size]), requests)
            del buffer[: 4 + size]
            self.owner._record(seconds, requests, events)
            future = self._waiting.pop(frame_id, None)
            if future is not None:
                future.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiting = list(self._waiting.values())
        if self._frame is not None:
            waiting.append(self._frame)
            self._frame, self._outgoing = None, []
        if waiting:
            log.error("the committer process stopped with %d frames of requests in flight", len(waiting))
        error = TransientStoreError("the committer process stopped; the events may or may not be stored")
        for future in waiting:
            if not future.done():
                future.set_exception(error)
        self._waiting.clear()

    # requests and answers
    def submit(self, kind: int, received_ts: float, source_id: str, ip: str, body: bytes) -> tuple[_FrameFuture, int]:
        frame = self._frame
        if frame is None:
            # one frame (and one write) for the requests that arrive in this loop iteration
            frame = self._frame = _FrameFuture(loop=self.loop)
            self._frame_size = 0
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self.loop.call_soon(self._flush)
        index = self._frame_size
        self._frame_size = index + 1
        source = source_id.encode()
        address = ip.encode()
        self._outgoing += (
            _REQUEST.pack(kind, received_ts, len(source), len(address), len(body)),
            source,
            address,
            body,
        )
        if index + 1 >= MAX_FRAME_REQUESTS:
            self._send_frame()  # a busy iteration: send this part now, so that the committer starts on it
        return frame, index

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._send_frame()

    def _send_frame(self) -> None:
        frame, outgoing = self._frame, self._outgoing
        self._frame, self._outgoing = None, []
        if frame is None or self.transport is None or self.closed:
            return
        self._next_id = frame_id = (self._next_id + 1) & 0xFFFFFFFF
        self._waiting[frame_id] = frame
        outgoing.insert(0, _FRAME.pack(sum(map(len, outgoing)) + 4, frame_id))
        self.transport.write(b"".join(outgoing))

    # shutting down
    async def drain(self, timeout: float) -> None:
        """Wait for the answers in flight, then close the socket; the process exits on EOF."""
        deadline = time.monotonic() + timeout
        while (self._waiting or self._frame is not None) and not self.closed and time.monotonic() < deadline:
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
    from omniweave.storage.ops.store import OpStore

    store = OpStore(settings.resolved_database_url)
    # long-lived objects (modules, the store) need no rescanning; the per-request garbage is
    # freed by reference counting
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    from omniweave.storage.ops.tables.privacy import IngestGuard

    try:
        serve(connection, store, settings.max_event_bytes, IngestGuard(store.engine, settings.privacy))
    finally:
        store.close()
        connection.close()


def serve(connection: socket.socket, store: Any, max_event_bytes: int, guard: Any = None) -> None:
    """Answer frames until the server closes the socket.

    Two threads, so that validating what just arrived overlaps the fsync of the previous group:
    this one reads frames and validates their requests; the commit thread takes everything
    validated so far, commits it in one transaction and sends the answers.
    """
    validated: queue.SimpleQueue[Validated | None] = queue.SimpleQueue()
    committing = threading.Thread(
        target=_commit_loop, args=(validated, connection, store), name="omniweave-commit", daemon=True
    )
    committing.start()
    buffer = bytearray()
    try:
        while data := connection.recv(1 << 20):
            buffer += data
            try:  # take everything that is already there
                while chunk := connection.recv(1 << 20, socket.MSG_DONTWAIT):
                    buffer += chunk
            except BlockingIOError:
                pass
            for frame in _frames(buffer):  # frame by frame: the commit thread starts on the first
                validated.put(([frame], [_validate(request, max_event_bytes, guard) for request in frame[1]]))
    finally:
        validated.put(None)  # commit and answer what is queued, then stop
        committing.join()


Request = tuple[int, float, str, str, bytes]  # kind, received_ts, source_id, ip, body


def _frames(buffer: bytearray) -> Iterator[tuple[int, list[Request]]]:
    """Every complete frame in `buffer` (consumed from it): its id and its requests."""
    while len(buffer) >= _FRAME.size:
        size, frame_id = _FRAME.unpack_from(buffer)
        if len(buffer) < 4 + size:
            return
        frame = bytes(buffer[_FRAME.size : 4 + size])
        del buffer[: 4 + size]
        requests: list[Request] = []
        position, end = 0, len(frame)
        while position < end:
            kind, received_ts, source_size, ip_size, body_size = _REQUEST.unpack_from(frame, position)
            position += _REQUEST.size
            source = frame[position : position + source_size].decode()
            position += source_size
            ip = frame[position : position + ip_size].decode()
            position += ip_size
            body = frame[position : position + body_size]
            position += body_size
            requests.append((kind, received_ts, source, ip, body))
        yield frame_id, requests


def _outcomes(data: bytes, count: int) -> list[Outcome]:
    """The per-request outcomes of an answer that is not "all stored"."""
    outcomes: list[Outcome] = []
    position = 0
    for _ in range(count):
        status, accepted, size = _OUTCOME.unpack_from(data, position)
        position += _OUTCOME.size
        outcomes.append((status, accepted, data[position : position + size] if size else _NO_ERRORS))
        position += size
    return outcomes


def _validate(request: Request, max_event_bytes: int, guard: Any = None) -> tuple[list[Row], list[dict[str, object]]]:
    kind, received_ts, source_id, ip, body = request
    try:
        payload = parse_json(body)
        items = batch_items(payload) if kind == 0 else single_item(payload, KINDS[kind])  # type: ignore[arg-type]
    except InputError as exc:
        return [], [exc.as_dict()]
    except Exception as exc:  # noqa: BLE001 - a bug must cost this request, never the committer process
        log.exception("a request body could not be read")
        return [], [{"index": None, "field": None, "reason": f"the body could not be read ({type(exc).__name__})"}]
    intake = build_rows(
        items,
        source_id,
        received_at=datetime.fromtimestamp(received_ts, UTC),
        received_ts=received_ts,
        max_event_bytes=max_event_bytes,
        context_defaults={"ip": ip} if ip else None,
        guard=guard,
    )
    return intake.rows, intake.errors


Validated = tuple[list[tuple[int, list[Request]]], list[tuple[list[Row], list[dict[str, object]]]]]


def _commit_loop(validated: queue.SimpleQueue[Validated | None], connection: socket.socket, store: Any) -> None:
    """The commit thread: group-commit whatever has been validated, answer, repeat."""
    try:
        stopping = False
        while not stopping:
            first = validated.get()
            if first is None:
                return
            frames, results = list(first[0]), list(first[1])
            while True:  # everything validated meanwhile joins this group
                try:
                    more = validated.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                frames += more[0]
                results += more[1]
            connection.sendall(_commit_group(frames, results, store))
    except BaseException:  # a bug or a broken socket: without this thread nothing is answered
        log.exception("the committer's commit thread failed; exiting")
        os._exit(1)


def _commit_group(
    frames: list[tuple[int, list[Request]]], validated: list[tuple[list[Row], list[dict[str, object]]]], store: Any
) -> bytes:
    """Commit the rows of every request of `frames` in one transaction, and build the answer to
    each frame."""
    started = time.perf_counter()
    failures: list[str | None] = [None] * len(validated)
    try:
        store.append([row for rows, _ in validated for row in rows])
    except Exception as exc:  # noqa: BLE001 - isolate the failing request(s), below
        log.warning("group commit of %d requests failed (%s); committing them one by one", len(validated), exc)
        for position, (rows, _) in enumerate(validated):
            try:
                store.append(rows)
            except Exception as single:  # noqa: BLE001 - reported to that request
                failures[position] = _describe(single)
    seconds = time.perf_counter() - started
    answers: list[bytes] = []
    position = 0
    for frame_id, frame in frames:
        end = position + len(frame)
        mine = validated[position:end]
        events = sum(len(rows) for rows, _ in mine)
        if not any(errors for _, errors in mine) and not any(failures[position:end]):
            answers.append(_ANSWER.pack(_ANSWER.size - 4, frame_id, seconds, len(frame), events, 1))
        else:
            parts: list[bytes] = []
            for (rows, errors), failure in zip(mine, failures[position:end], strict=False):
                if failure is not None:
                    status, accepted = 503, 0
                    errors = [{"index": None, "field": None, "reason": f"not stored, retry: {failure}"}]
                else:
                    status, accepted = (400 if errors else 200), len(rows)
                encoded = orjson.dumps(errors) if errors else _NO_ERRORS
                parts += (_OUTCOME.pack(status, accepted, len(encoded)), encoded)
            body = b"".join(parts)
            events -= sum(
                len(rows) for (rows, _), failure in zip(mine, failures[position:end], strict=False) if failure
            )
            answers.append(_ANSWER.pack(_ANSWER.size - 4 + len(body), frame_id, seconds, len(frame), events, 0) + body)
        position = end
    return b"".join(answers)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, StoreError):
        return str(exc)
    log.error("could not commit events to the inbox: %r", exc)
    return f"could not commit events to the inbox: {exc}"
