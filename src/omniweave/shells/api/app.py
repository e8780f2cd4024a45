"""The HTTP shell: the collector (and, later, the REST API) as one ASGI app, and `serve`.

`create_app(settings)` builds the app: the collector's routes, `GET /health`, and a lifespan
that starts and drains the collector's committer process (adapters/collector/committer.py). `serve(settings)` runs that app
under uvicorn (uvloop + httptools when installed) together with the loader that moves the inbox
into the Parquet event log.

The loader runs in a child process rather than a thread: turning events into Parquet is
CPU-bound Python, and in a thread it would compete with request handling for the GIL. The child
runs the ordinary `BackgroundLoader`; it dies with the server (adapters/childproc.py: PR_SET_PDEATHSIG,
plus EOF on its stdin), holds a lock file so two loaders never run on one home at once, and on a graceful
shutdown drains the inbox before exiting.
"""

from __future__ import annotations

import fcntl
import gc
import importlib.util
import json
import os
import select
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omniweave.collect.childproc import settings_from_stdin, spawn
from omniweave.collect.http import Collector
from omniweave.collect.loader import LOADER
from omniweave.runtime import Runtime
from omniweave.settings import Settings


class LoaderProcess:
    """The event-log loader in a child process, restarted if it dies, its last error readable here."""

    def __init__(self, settings: Settings, restart_delay: float = 1.0):
        self.settings = settings
        self.restart_delay = restart_delay
        self.process: subprocess.Popen[bytes] | None = None
        self.last_error: str | None = None
        self.restarts = 0
        self._stopping = False

    def start(self) -> None:
        code = "from omniweave.shells.api.app import run_loader_child; run_loader_child()"
        self.process = spawn(
            code, self.settings, args=["--loader-for", str(self.settings.home)], stdout=subprocess.PIPE
        )
        threading.Thread(target=self._watch, args=(self.process,), name="omniweave-loader-watch", daemon=True).start()

    def _watch(self, process: subprocess.Popen[bytes]) -> None:
        """Read the child's reports; start a new child if this one dies while we still need it."""
        assert process.stdout is not None
        for line in process.stdout:
            try:
                self.last_error = json.loads(line).get("error")
            except ValueError:
                continue
        code = process.wait()
        if not self._stopping:
            self.last_error = f"the loader process exited with code {code}; restarted"
            time.sleep(self.restart_delay)
            if not self._stopping:
                self.restarts += 1
                self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 120.0) -> None:
        """Ask the loader to drain the inbox into the log and exit; kill it if it takes too long."""
        self._stopping = True
        if self.process is None or self.process.poll() is not None:
            return
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(b"drain\n")
            self.process.stdin.flush()
            self.process.wait(timeout=timeout)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()


def run_loader_child() -> None:
    """Entry point of the loader process (see LoaderProcess); reports its state as JSON lines."""
    from omniweave.collect.loader import BackgroundLoader

    settings, pending = settings_from_stdin()
    # Background work: under CPU pressure, answering requests comes first; the inbox is durable
    # and the loader catches up as soon as the collector is less busy. SCHED_IDLE (Linux) runs it
    # only on CPU time nothing else wants; elsewhere, a low priority. Threads started later
    # (the loader's, DuckDB's, Arrow's) inherit it.
    if hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    else:
        os.nice(10)
    Path(settings.home).mkdir(parents=True, exist_ok=True)
    lock = open(Path(settings.home) / "loader.lock", "w")  # noqa: SIM115 - held for the life of the process
    fcntl.flock(lock, fcntl.LOCK_EX)
    runtime = Runtime(settings)
    loader = BackgroundLoader(
        runtime.store,
        runtime.log,
        settings.loader_batch_size,
        settings.loader_interval_seconds,
        prune=lambda: runtime.store.prune(settings.dedupe_hours * 3600),
        busy_events_per_second=settings.loader_busy_events_per_second,
        max_delay=settings.loader_max_delay_seconds,
    )
    loader.start()

    def describe(error: BaseException | None) -> str | None:
        return None if error is None else f"{type(error).__name__}: {error}"

    def report(message: str | None) -> str | None:
        os.write(1, json.dumps({"error": message}).encode() + b"\n")
        return message

    reported = report(None)
    while True:
        if not pending:
            readable, _, _ = select.select([0], [], [], 0.5)
            if readable:
                pending = os.read(0, 1024)
                if not pending:  # the server is gone without asking us to drain
                    os._exit(1)
        if b"drain" in pending:
            loader.stop(drain=True)
            report(describe(loader.last_error))
            runtime.close()
            return
        pending = b""
        if describe(loader.last_error) != reported:
            reported = report(describe(loader.last_error))


def _health_body(runtime: Runtime, collector: Collector, loader: LoaderProcess | None) -> dict[str, Any]:
    last_seq = runtime.store.max_seq()
    state = runtime.store.consumers().get(LOADER)
    position = state.position if state else 0
    return {
        "status": "ok",
        "inbox_last_seq": last_seq,
        "collector": collector.committer.stats(),
        "loader": {
            "running": bool(loader and loader.running),
            "position": position,
            "lag": last_seq - position,
            "last_error": loader.last_error if loader else None,
            "restarts": loader.restarts if loader else 0,
        },
    }


def create_app(settings: Settings, *, with_loader: bool = False) -> FastAPI:
    """The ASGI app: collector routes and /health. `with_loader` also runs the loader process."""
    runtime = Runtime(settings)
    collector = Collector(settings, runtime.store)
    loader = LoaderProcess(settings) if with_loader else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await collector.start()
        if loader:
            loader.start()
        try:
            yield
        finally:
            await collector.drain()
            collector.stop()
            if loader:
                loader.stop()
            runtime.close()

    async def health(_request: Request) -> Response:
        """Liveness plus how far the loader is behind the inbox, and its last error."""
        try:
            body = await run_in_threadpool(_health_body, runtime, collector, loader)
        except Exception as exc:  # noqa: BLE001 - the store is down: say so, with the reason
            return Response(
                orjson.dumps({"status": "error", "error": f"{type(exc).__name__}: {exc}"}),
                status_code=503,
                media_type="application/json",
            )
        return Response(orjson.dumps(body), media_type="application/json")

    async def profile_by_id(request: Request) -> Response:
        """GET /v1/profiles/{ref}: a person's profile and timeline, by person id or identifier."""
        return await _profile_response(request, runtime, request.path_params["ref"])

    async def profile_by_identifier(request: Request) -> Response:
        """GET /v1/profiles?identifier=kind:value."""
        ref = request.query_params.get("identifier")
        if not ref:
            return _json_error(400, "identifier", "expected ?identifier=kind:value (e.g. email:ann@example.com)")
        return await _profile_response(request, runtime, ref)

    async def segments(request: Request) -> Response:
        """GET /v1/segments: every segment (library and project files) with its current size."""
        return await _secret_only(request, runtime, lambda: _segment_list(runtime))

    async def segment(request: Request) -> Response:
        """GET /v1/segments/{id}: one segment and its members; PUT: write its definition (a segment file)."""
        sid = request.path_params["segment_id"]
        if request.method == "PUT":
            try:
                body = orjson.loads(await request.body())
            except orjson.JSONDecodeError as exc:
                return _json_error(400, "body", f"expected a JSON segment definition: {exc}")
            return await _secret_only(request, runtime, lambda: _segment_put(runtime, sid, body))
        return await _secret_only(request, runtime, lambda: _segment_get(runtime, sid))

    app = FastAPI(title="omniweave", version="0.1.0", lifespan=lifespan)
    app.router.routes[:0] = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/profiles", profile_by_identifier, methods=["GET"]),
        Route("/v1/profiles/{ref:path}", profile_by_id, methods=["GET"]),
        Route("/v1/segments", segments, methods=["GET"]),
        Route("/v1/segments/{segment_id}", segment, methods=["GET", "PUT"]),
        *collector.routes(),
    ]
    app.state.settings = settings
    app.state.runtime = runtime
    app.state.collector = collector
    app.state.loader = loader
    return app


def _error_body(message: str, errors: list[tuple[str | None, str]]) -> dict[str, Any]:
    """The API's error shape: every problem as {index, field, reason}, and a message."""
    return {
        "success": False,
        "errors": [{"index": None, "field": field, "reason": reason} for field, reason in errors],
        "message": message,
    }


def _json_error(status: int, field: str | None, reason: str) -> Response:
    return Response(
        orjson.dumps(_error_body(reason, [(field, reason)])), status_code=status, media_type="application/json"
    )


def _secret_key(request: Request) -> str | None:
    """The secret key from `Authorization: Bearer <key>` or Basic with the key as user name."""
    from omniweave.collect.http.body import key_from_authorization
    from omniweave.errors import AuthError

    try:
        return key_from_authorization(request.headers.get("authorization"))
    except AuthError:
        return None


async def _secret_only(request: Request, runtime: Runtime, work: Any) -> Response:
    """Run `work` (returns (status, body)) in a thread if the request carries a secret key."""
    from omniweave.errors import InputError

    key = _secret_key(request)
    if key is None or not await run_in_threadpool(runtime.store.is_secret_key, key):
        return _json_error(
            401,
            "Authorization",
            "a secret key is required (Bearer, or Basic with the key as user name); "
            "create one with `omniweave keys secret`",
        )
    try:
        status, body = await run_in_threadpool(work)
    except InputError as exc:
        problems = getattr(exc, "problems", None) or [(exc.field, str(exc))]  # a SegmentError lists every one
        return Response(orjson.dumps(_error_body(str(exc), problems)), status_code=400, media_type="application/json")
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _segment_sizes(runtime: Runtime) -> dict[str, int]:
    if not runtime.log.has_data("segment_members"):
        return {}
    members = runtime.warehouse().table("segment_members")
    counts = members.group_by("segment_id").aggregate(n=members.count()).to_pyarrow().to_pylist()
    return {row["segment_id"]: row["n"] for row in counts}


def _segment_list(runtime: Runtime) -> tuple[int, Any]:
    from omniweave.segments.service.evaluate import load_segments, segment_summaries

    sizes = _segment_sizes(runtime)
    rows = segment_summaries(load_segments(runtime.settings.home))
    return 200, [{**row, "members": sizes.get(row["id"])} for row in rows]


def _segment_get(runtime: Runtime, sid: str) -> tuple[int, Any]:
    from omniweave.segments.service.evaluate import load_segments, segment_summaries

    segments = load_segments(runtime.settings.home)
    if sid not in segments:
        return 404, _error_body(f"no segment {sid!r}", [("segment_id", f"no segment {sid!r}")])
    row = segment_summaries({sid: segments[sid]})[0]
    members: list[str] = []
    if runtime.log.has_data("segment_members"):
        table = runtime.warehouse().table("segment_members")
        chosen = table.filter(table.segment_id == sid).order_by("person_id").limit(1000)
        members = chosen.person_id.to_pyarrow().to_pylist()
    return 200, {**row, "members": _segment_sizes(runtime).get(sid), "person_ids": members}


def _segment_put(runtime: Runtime, sid: str, body: Any) -> tuple[int, Any]:
    """Check a definition (its own rules, then against the profiles if there are some) and write it as
    `segments/<id>.yaml`; every problem is reported at once and nothing is written then."""
    import yaml

    from omniweave.errors import InputError
    from omniweave.segments.language import parse_segment
    from omniweave.segments.service.evaluate import (
        compiler_for,
        load_segments,
        segment_summaries,
        segments_folder,
    )

    if isinstance(body, dict):
        body = {**body, "id": body.get("id", sid)}
    seg = parse_segment(body, source=f"PUT /v1/segments/{sid}")
    if seg.id != sid:
        raise InputError(f"the body's id {seg.id!r} is not the path's {sid!r}", field="id")
    segments = {**load_segments(runtime.settings.home), sid: seg}
    if runtime.log.has_data("profiles") and runtime.log.has_data("identities"):
        compiler_for(runtime, segments).members(sid)  # compiles: unknown traits, wrong types...
    folder = segments_folder(runtime.settings.home)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{sid}.yaml").write_text(yaml.safe_dump(body, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return 200, segment_summaries({sid: seg})[0]


async def _profile_response(request: Request, runtime: Runtime, ref: str) -> Response:
    """The REST API's read of one person: needs a secret key (`omniweave keys secret`), not a write key."""
    from omniweave.errors import InputError
    from omniweave.profiles.service.lookup import find_person, person_view, view_as_dict

    key = _secret_key(request)
    if key is None or not await run_in_threadpool(runtime.store.is_secret_key, key):
        return _json_error(
            401,
            "Authorization",
            "a secret key is required (Bearer, or Basic with the key as user name); "
            "create one with `omniweave keys secret`",
        )
    limit = request.query_params.get("limit", "50")
    if not limit.isdigit() or not 0 < int(limit) <= 1000:
        return _json_error(400, "limit", f"expected a whole number from 1 to 1000, got {limit!r}")

    def lookup() -> dict[str, Any] | None:
        found = find_person(runtime, ref)
        return None if found is None else view_as_dict(person_view(runtime, found[0], found[1], limit=int(limit)))

    try:
        body = await run_in_threadpool(lookup)
    except InputError as exc:
        return _json_error(400, exc.field or "identifier", str(exc))
    if body is None:
        return _json_error(404, "identifier", f"nobody has the identifier or person id {ref!r}")
    return Response(orjson.dumps(body), media_type="application/json")


def serve(settings: Settings) -> None:
    """Run the collector (and the loader) on settings.host:settings.port until interrupted."""
    import uvicorn

    app = create_app(settings, with_loader=True)
    # Everything imported so far lives as long as the process: keep the garbage collector from
    # rescanning it, and let it run less often. Without this, collections triggered by the JSON
    # of in-flight requests take close to half of the server's time under load.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        access_log=False,
        log_level="warning",
        server_header=False,
        backlog=4096,
        timeout_graceful_shutdown=30,
    )
    print(f"omniweave collector listening on http://{settings.host}:{settings.port}", flush=True)
    uvicorn.Server(config).run()
