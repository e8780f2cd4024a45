"""The HTTP shell: the collector and the REST API as one ASGI app, and `serve`.

`create_app(settings)` builds the app:

    collector    the Segment-compatible endpoints (collect/http/routes.py), raw Starlette routes
                 matched first, since they carry nearly every request; documented by collect.py
    system.py    GET /health
    profiles.py  GET /v1/profiles?identifier=…, GET /v1/profiles/{ref}
    segments.py  GET /v1/segments, GET and PUT /v1/segments/{segment_id}
    push.py      GET /v1/push/vapid-public-key, POST and DELETE /v1/push/subscriptions (a write key)
    messaging.py POST /v1/channels/{sms|whatsapp}/status and /inbound (provider-signed webhooks)
    access.py    sessions (/v1/auth/login|logout|me), /v1/users, /v1/keys, /v1/sources/{name}/…, /v1/audit
    bridges.py   GET /q/{token} (QR short links: 302 with UTM tags and a page event)
    forms.py     GET|POST /f/{form} (hosted sign-up forms, the embeddable snippet, confirmations), /v1/forms
    channels.py  POST|GET /u/{token} (one-click unsubscribe), GET /c/{token}, GET /o/{token}.gif (e-mail
                 clicks and opens), POST /v1/inbound/email/dsn (bounce reports, a secret key)

The routers take their Runtime and the one secret-key check from deps.py, their schemas from
schemas.py, and call service functions only; errors.py gives every refusal one shape. The lifespan
starts and drains the collector's committer process (collect/http/committer.py). `serve(settings)`
runs the app under uvicorn (uvloop + httptools when installed) together with the loader process
(loader.py) that moves the inbox into the Parquet event log. `/openapi.json` describes every route.
"""

from __future__ import annotations

import gc
import importlib.util
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from omniweave.collect.http import Collector
from omniweave.privacy.masking import install_log_masking
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.shells.api import (
    access,
    bridges,
    channels,
    content,
    forms,
    journeys,
    messaging,
    privacy,
    profiles,
    push,
    segments,
    system,
)
from omniweave.shells.api.collect import add_collector
from omniweave.shells.api.errors import install_error_handlers
from omniweave.shells.api.loader import LoaderProcess, run_loader_child
from omniweave.shells.web.app import router as dashboard_router
from omniweave.shells.web.app import stop_warming

__all__ = ["create_app", "run_loader_child", "serve"]

TITLE = "omniweave"
VERSION = "0.1.0"
DESCRIPTION = (
    "The collector (Segment- and RudderStack-compatible; a source's write key) and the REST API "
    "(profiles, segments; a secret key from `omniweave keys secret`)."
)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document: the routers' routes, the collector's raw routes, and no 422 answers (a
    request that fails validation gets a 400 with the error body, errors.py)."""
    if app.openapi_schema is None:
        document = get_openapi(title=TITLE, version=VERSION, description=DESCRIPTION, routes=app.routes)
        for path_item in document.get("paths", {}).values():
            for operation in path_item.values():
                operation.get("responses", {}).pop("422", None)
                _errors_as_json(operation.get("responses", {}))
        schemas = document.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = add_collector(document, app.routes)
    return app.openapi_schema


def _errors_as_json(responses: dict[str, Any]) -> None:
    """Refusals are always JSON (errors.py), even on a route whose own answer is text, HTML, a redirect or
    an image: FastAPI documents them in the route's media type, so say application/json instead."""
    for status, response in responses.items():
        content = response.get("content")
        if not status.isdigit() or int(status) < 400 or not content or "application/json" in content:
            continue
        schemas = [media.get("schema") for media in content.values() if media.get("schema")]
        if schemas:
            response["content"] = {"application/json": {"schema": schemas[0]}}


def create_app(settings: Settings, *, with_loader: bool = False) -> FastAPI:
    """The ASGI app: the collector, /health and the REST API. `with_loader` also runs the loader process."""
    install_log_masking()  # no plain e-mail or phone number in a log line (docs/privacy.md)
    runtime = Runtime(settings)
    collector = Collector(settings, runtime.store)
    loader = LoaderProcess(settings) if with_loader else None
    privacy_jobs = privacy.JobWorker(settings)  # runs the data-subject requests (shells/api/privacy.py)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await collector.start()
        if loader:
            loader.start()
        privacy_jobs.start()
        try:
            yield
        finally:
            stop_warming()  # no dashboard warm-up left inside the engine as the process exits
            await collector.drain()
            collector.stop()
            if loader:
                loader.stop()
            privacy_jobs.stop()
            runtime.close()
            gc.collect()  # the pages' DuckDB connections closed now, not by a finaliser as the process exits

    app = FastAPI(title=TITLE, version=VERSION, lifespan=lifespan)
    for router in (
        system.router,
        access.router,
        profiles.router,
        segments.router,
        messaging.router,
        channels.router,
        bridges.router,
        push.router,
        privacy.router,
        journeys.router,
        forms.router,
        content.router,
        dashboard_router,
    ):
        app.include_router(router)
    app.router.routes[:0] = collector.routes()  # the hot path is matched first
    install_error_handlers(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.state.settings = settings
    app.state.runtime = runtime
    app.state.collector = collector
    app.state.loader = loader
    app.state.privacy_jobs = privacy_jobs
    return app


def serve(settings: Settings) -> None:
    """Run the collector, the REST API and the loader on settings.host:settings.port until interrupted."""
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
        # Longer than the idle timeout of the load balancers in front (60 s on AWS, GCP and nginx's
        # 75 s): with uvicorn's default 5 s, a client that reuses a kept-alive connection just as the
        # server closes it gets a reset instead of an answer (a storm test on a busy machine saw it).
        timeout_keep_alive=75,
        timeout_graceful_shutdown=30,
    )
    print(f"omniweave collector listening on http://{settings.host}:{settings.port}", flush=True)
    uvicorn.Server(config).run()
