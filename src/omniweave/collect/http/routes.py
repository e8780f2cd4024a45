"""The collector's HTTP handlers, as plain Starlette routes (no pydantic, orjson throughout).

Endpoints (all POST, all with CORS for any origin):
    /v1/track /v1/identify /v1/page /v1/screen /v1/group /v1/alias   one event, typed by the path
    /v1/batch /v1/import                                             {"batch": [...], ...}
    /t /i /p /g /a /s and /b (also under /v1/)                       analytics.js short paths
    /v1/noop                                                         reads the body, stores nothing
and GET /v1/projects/{writeKey}/settings, the settings document analytics-next loads.

Answers: 200 {"success": true} once every event is durable; 400 with the rejected items
(valid items of the same request are still committed); 401 for a missing or unknown write key; 404 for
the write key of a disabled source;
429 with Retry-After over the source's rate limit; 503 with Retry-After if the store failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from omniweave.collect.http.body import (
    decompress,
    key_from_authorization,
    key_from_payload,
    parse_json,
    read_body,
    scan_headers,
)
from omniweave.collect.http.committer import Committer, outcome
from omniweave.collect.http.limits import DISABLED, KeyCache, RateLimiter, lookup_source
from omniweave.errors import AuthError, InputError, StoreError
from omniweave.settings import Settings
from omniweave.storage.ops.store import OpStore

JSON = "application/json"
_OK = b'{"success":true}'
_SINGLE = {
    "track": "track",
    "identify": "identify",
    "page": "page",
    "screen": "screen",
    "group": "group",
    "alias": "alias",
}
_SHORT = {"t": "track", "i": "identify", "p": "page", "s": "screen", "g": "group", "a": "alias"}
_ALLOWED_HEADERS = "Content-Type, Content-Encoding, Authorization, AnonymousId"

Handler = Callable[[Request], Awaitable[Response]]


def cors_headers(request: Request) -> dict[str, str]:
    """CORS for any origin; the origin is echoed so that credentialed requests work too."""
    return cors_for(request.headers.get("origin"))


def cors_for(origin: str | None) -> dict[str, str]:
    if origin:
        return {"access-control-allow-origin": origin, "access-control-allow-credentials": "true", "vary": "Origin"}
    return {"access-control-allow-origin": "*"}


def preflight(request: Request) -> Response:
    """The answer to a CORS preflight (OPTIONS) for any collector path."""
    headers = cors_headers(request)
    headers["access-control-allow-methods"] = "GET, POST, OPTIONS"
    headers["access-control-allow-headers"] = request.headers.get("access-control-request-headers") or _ALLOWED_HEADERS
    headers["access-control-max-age"] = "86400"
    return Response(status_code=204, headers=headers)


_CODES = {400: "invalid_request", 401: "unauthorized", 404: "not_found", 429: "rate_limited", 503: "unavailable"}
_DISABLED = "the source of this write key is disabled"


def error_response(status: int, errors: list[dict[str, Any]], headers: dict[str, str], accepted: int = 0) -> Response:
    """The JSON body of every refusal. `code` and `message` are what the Python SDKs read from it
    (rudder-sdk-python fails on an error body without them); `errors` has the details."""
    first = errors[0]
    where = ", ".join(
        part
        for part in (
            f"item {first['index']}" if first["index"] is not None else "",
            f"field {first['field']}" if first["field"] else "",
        )
        if part
    )
    message = f"{where}: {first['reason']}" if where else str(first["reason"])
    if len(errors) > 1:
        message = f"{len(errors)} events rejected; the first: {message}"
    body = {
        "success": False,
        "code": _CODES.get(status, "error"),
        "message": message,
        "accepted": accepted,
        "errors": errors,
    }
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type=JSON)


def _client_ip(forwarded_for: str | None, client: tuple[str, int] | None) -> str | None:
    if forwarded_for:
        return forwarded_for.split(",", 1)[0].strip()
    return client[0] if client else None


class Collector:
    """The collector's state (key cache, rate limits, the committer process) and its routes."""

    def __init__(self, settings: Settings, store: OpStore):
        self.settings = settings
        self.store = store
        self.committer = Committer(settings)
        self.keys = KeyCache()
        self.limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
        self._lookups: dict[str, asyncio.Future[str | None]] = {}
        self._authorized: dict[str, str] = {}  # Authorization header → write key, skips decoding it

    async def start(self) -> None:
        await self.committer.start()

    async def drain(self) -> None:
        """Answer the requests in flight, then stop the committer process."""
        await self.committer.drain()

    def stop(self) -> None:
        """Kill the committer process if `drain` could not end it."""
        self.committer.stop()

    def routes(self) -> list[Route]:
        """Every collector route; the busiest first, since routes are matched in order.

        Each route's name says what it takes, for the OpenAPI document (shells/api/collect.py):
        `collect:batch`, `collect:<type>` (one event of that type), `collect:noop`, `collect:settings`."""
        post = ["POST", "OPTIONS"]
        routes = [
            Route("/v1/batch", self._handler(None), methods=post, name="collect:batch"),
            Route("/v1/import", self._handler(None), methods=post, name="collect:batch"),
        ]
        routes += [
            Route(f"/v1/{name}", self._handler(kind), methods=post, name=f"collect:{kind}")
            for name, kind in _SINGLE.items()
        ]
        # right after /v1/track, so that the benchmark's ceiling pays (almost) the same routing
        routes.insert(3, Route("/v1/noop", self.noop, methods=post, name="collect:noop"))
        for prefix in ("", "/v1"):
            routes += [
                Route(f"{prefix}/{letter}", self._handler(kind), methods=post, name=f"collect:{kind}")
                for letter, kind in _SHORT.items()
            ]
            routes.append(Route(f"{prefix}/b", self._handler(None), methods=post, name="collect:batch"))
        # analytics-next metrics; sampleRate is 0 anyway
        routes.append(Route("/v1/m", self.noop, methods=post, name="collect:noop"))
        settings_path = "/v1/projects/{write_key}/settings"
        routes.append(Route(settings_path, self.project_settings, methods=["GET", "OPTIONS"], name="collect:settings"))
        return routes

    def _handler(self, kind: str | None) -> Handler:
        return functools.partial(self.ingest, kind=kind)  # a partial: one coroutine frame less per request

    async def source_for(self, write_key: str) -> str | None:
        """The source id of a write key (cached in memory for a few seconds), DISABLED if its source is
        disabled, None if unknown.

        Concurrent requests with the same uncached key share one store lookup.
        """
        source_id = self.keys.get(write_key)
        if source_id is not None or self.keys.recently_missed(write_key):
            return source_id
        pending = self._lookups.get(write_key)
        if pending is None or pending.get_loop() is not asyncio.get_running_loop():
            pending = asyncio.ensure_future(run_in_threadpool(lookup_source, self.store, write_key))
            self._lookups[write_key] = pending
            pending.add_done_callback(lambda _done: self._lookups.pop(write_key, None))
        source_id = await asyncio.shield(pending)
        self.keys.remember(write_key, source_id)
        return source_id

    async def _header_source(self, authorization: str) -> str | None:
        """The source of the write key in an Authorization header (None if the header carries none)."""
        header_key = self._authorized.get(authorization)
        if header_key is None:
            header_key = key_from_authorization(authorization)
            if header_key is None:
                return None
            if len(self._authorized) >= 10_000:
                self._authorized.clear()
            self._authorized[authorization] = header_key
        source_id = self.keys.get(header_key) or await self.source_for(header_key)
        if source_id is None:
            raise AuthError("unknown write key")
        return source_id

    async def ingest(self, request: Request, kind: str | None) -> Response:
        """Validate the request's events and answer once the valid ones are durable.

        `kind` is the event type the path implies; None for batch paths.
        """
        if request.method == "OPTIONS":
            return preflight(request)
        scope = request.scope
        found = scan_headers(scope["headers"])
        headers = cors_for(found.origin)
        limit = self.settings.max_request_bytes
        try:
            source_id = await self._header_source(found.authorization) if found.authorization else None
            body = await read_body(request.receive, limit, found.content_length)
            if found.content_encoding is not None:
                body = decompress(body, found.content_encoding, limit)
            if source_id is None:
                body_key = key_from_payload(parse_json(body))  # analytics.js: the key is in the body
                if body_key is None:
                    raise AuthError(
                        "no write key: send it as the Basic auth user name, as a Bearer token, or as writeKey in the body"
                    )
                source_id = await self.source_for(body_key)
                if source_id is None:
                    raise AuthError("unknown write key")
            if source_id == DISABLED:
                return error_response(404, [{"index": None, "field": "writeKey", "reason": _DISABLED}], headers)
            wait = self.limiter.wait_time(source_id)
            if wait:
                return self._too_many(wait, headers)
            ip = _client_ip(found.forwarded_for, scope.get("client"))
            submitted = self.committer.submit(kind, time.time(), source_id, ip, body)
            if submitted is None:  # the committer is (re)starting
                status, accepted, errors = await self.committer.commit(kind, time.time(), source_id, ip, body)
            else:
                future, index = submitted
                status, accepted, errors = outcome(await future, index)
        except AuthError as exc:
            return error_response(401, [{"index": None, "field": "writeKey", "reason": str(exc)}], headers)
        except InputError as exc:
            return error_response(400, [exc.as_dict()], headers)
        except ClientDisconnect:
            return Response(status_code=400)
        except StoreError as exc:
            headers["retry-after"] = "1"
            return error_response(503, [{"index": None, "field": None, "reason": f"not stored, retry: {exc}"}], headers)
        if status == 200:
            return Response(_OK, headers=headers, media_type=JSON)
        if status == 503:
            headers["retry-after"] = "1"
        return error_response(status, orjson.loads(errors), headers, accepted=accepted)

    def _too_many(self, wait: float, headers: dict[str, str]) -> Response:
        seconds = str(max(1, math.ceil(wait)))
        headers["retry-after"] = seconds
        headers["x-ratelimit-reset"] = seconds  # analytics-next reads this one
        limit = self.settings.rate_limit_per_second
        reason = f"more than {limit:g} requests per second from this source; retry after {seconds} s"
        return error_response(429, [{"index": None, "field": None, "reason": reason}], headers)

    async def noop(self, request: Request) -> Response:
        """Reads the body and answers like an accepted request, storing nothing (benchmark ceiling)."""
        if request.method == "OPTIONS":
            return preflight(request)
        found = scan_headers(request.scope["headers"])
        with contextlib.suppress(InputError, ClientDisconnect):  # a benchmark endpoint: the same answer either way
            await read_body(request.receive, self.settings.max_request_bytes, found.content_length)
        return Response(_OK, headers=cors_for(found.origin), media_type=JSON)

    async def project_settings(self, request: Request) -> Response:
        """The settings document analytics-next fetches from `<cdn>/v1/projects/<writeKey>/settings`."""
        if request.method == "OPTIONS":
            return preflight(request)
        headers = cors_headers(request)
        write_key = request.path_params["write_key"]
        source_id = await self.source_for(write_key)
        if source_id is None:
            return error_response(401, [{"index": None, "field": "writeKey", "reason": "unknown write key"}], headers)
        if source_id == DISABLED:
            return error_response(404, [{"index": None, "field": "writeKey", "reason": _DISABLED}], headers)
        host = request.headers.get("host") or f"{self.settings.host}:{self.settings.port}"
        protocol = request.headers.get("x-forwarded-proto", request.url.scheme)
        protocol = "https" if protocol in ("https", "wss") else "http"
        headers["cache-control"] = "public, max-age=60"
        return Response(
            orjson.dumps(analytics_next_settings(write_key, f"{host}/v1", protocol)), headers=headers, media_type=JSON
        )


def analytics_next_settings(write_key: str, api_host: str, protocol: str) -> dict[str, Any]:
    """The settings analytics-next needs to send every event to this collector and nowhere else."""
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
                "versionSettings": {"version": "4.4.7", "componentTypes": ["browser"]},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }
