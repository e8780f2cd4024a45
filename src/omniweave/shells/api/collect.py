"""The collector's routes in the OpenAPI document.

The collector's hot path stays raw Starlette routes (collect/http/routes.py: no pydantic, orjson
throughout), which FastAPI does not describe by itself. `collector_paths` writes their path items
from the routes' names, with the request schemas of a Segment event and batch, so `/openapi.json`
lists every route the server answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from starlette.routing import BaseRoute, Route

from omniweave.shells.api.schemas import CollectorError, CollectorOk, SegmentBatch, SegmentEvent

_REF = "#/components/schemas/{model}"
_WRITE_KEY = "writeKey"
_TAG = "collect"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _refusals(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "some or all events rejected (the valid ones are stored); each problem with its item and field",
        401: "no write key, or an unknown one",
        404: "the write key's source is disabled",
        429: "over the source's rate limit; retry after Retry-After seconds",
        503: "not stored; retry after Retry-After seconds (retries are deduplicated by messageId)",
    }
    return {str(status): _json(_ref(CollectorError), reasons[status]) for status in statuses}


def _ingest(path: str, kind: str) -> dict[str, Any]:
    batch = kind == "batch"
    body = _ref(SegmentBatch) if batch else _ref(SegmentEvent)
    what = "a batch of events" if batch else f"one {kind} event (the path sets its type)"
    return {
        "post": {
            "tags": [_TAG],
            "summary": f"Collect {what}",
            "description": "Segment- and RudderStack-compatible; answered once every valid event is durable. "
            "The write key comes as the Basic user name, a Bearer token, or `writeKey` in the body.",
            "operationId": f"collect_{kind}_{path.strip('/').replace('/', '_')}",
            "security": [{_WRITE_KEY: []}, {}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {"200": _json(_ref(CollectorOk), "every event stored"), **_refusals(400, 401, 404, 429, 503)},
        }
    }


def _noop(path: str) -> dict[str, Any]:
    return {
        "post": {
            "tags": [_TAG],
            "summary": "Read the body and store nothing (a benchmark's ceiling; analytics-next metrics)",
            "operationId": f"collect_noop_{path.strip('/').replace('/', '_')}",
            "requestBody": {"content": {"application/json": {"schema": {}}}},
            "responses": {"200": _json(_ref(CollectorOk), "read")},
        }
    }


def _settings(path: str) -> dict[str, Any]:
    return {
        "get": {
            "tags": [_TAG],
            "summary": "The settings document analytics-next loads for a write key",
            "operationId": "collect_project_settings",
            "parameters": [{"name": "write_key", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": _json({"type": "object"}, "integrations, plan, metrics: everything goes to this collector"),
                **_refusals(401, 404),
            },
        }
    }


def collector_paths(routes: Iterable[BaseRoute]) -> dict[str, dict[str, Any]]:
    """OpenAPI path items for every collector route (those named `collect:…`)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.name.startswith("collect:"):
            continue
        kind = route.name.partition(":")[2]
        if kind == "noop":
            paths[route.path] = _noop(route.path)
        elif kind == "settings":
            paths[route.path] = _settings(route.path)
        else:
            paths[route.path] = _ingest(route.path, kind)
    return paths


def add_collector(openapi: dict[str, Any], routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """`openapi` with the collector's paths, its schemas and its write-key security scheme added."""
    components = openapi.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in (SegmentEvent, SegmentBatch, CollectorOk, CollectorError):
        schema = model.model_json_schema(ref_template=_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    components.setdefault("securitySchemes", {})[_WRITE_KEY] = {
        "type": "http",
        "scheme": "basic",
        "description": "A source's write key as the Basic user name (Bearer works too): `omniweave keys create`",
    }
    openapi["paths"] = {**collector_paths(routes), **openapi.get("paths", {})}
    return openapi
