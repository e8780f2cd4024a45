"""The REST API as a real API: `/openapi.json` documents every route the server answers, and every
documented route, fed what its schema allows (schemathesis), answers without a 5xx and within its
documented statuses and schemas.

The server is the real app under uvicorn on a small demo world (profiles built, segments evaluated),
with a secret key for the REST routes and a source's write key for the collector's.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import BaseRoute

from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.shells.api.app import create_app

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 4
TIMEOUT = 120  # seconds a request may take: an unknown bare identifier is looked up under every kind


@dataclass
class Api:
    base_url: str
    openapi: dict[str, Any]
    routes: list[BaseRoute]
    secret: str
    write_key: str
    home: Path

    def headers_for(self, path: str) -> dict[str, str]:
        """The collector's routes take a source's write key; the REST API's a secret key."""
        rest = path == "/health" or path.startswith(
            (
                "/v1/profiles",
                "/v1/segments",
                "/v1/auth",
                "/v1/users",
                "/v1/keys",
                "/v1/sources",
                "/v1/audit",
                "/v1/privacy",
                "/v1/journeys",
                "/v1/persons",
                "/v1/forms",
                "/v1/messages",
            )
        )
        return {"Authorization": f"Bearer {self.secret if rest else self.write_key}"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, demo_home: Path) -> Iterator[Api]:
    """A copy of the shared demo world (tests/conftest.py) served on a free port."""
    home = tmp_path_factory.mktemp("api") / "home"
    shutil.copytree(demo_home, home)
    settings = Settings(home=str(home))
    runtime = Runtime(settings)
    try:
        secret = runtime.store.create_secret_key("schemathesis")
        _, write_key = runtime.store.create_source("schemathesis")
    finally:
        runtime.close()
    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    openapi = httpx.get(f"{base_url}/openapi.json", timeout=TIMEOUT).json()
    routes = list(app.routes)
    yield Api(base_url, openapi, routes, secret, write_key, home)
    server.should_exit = True
    thread.join(timeout=60)
    sock.close()


def _template(path: str) -> str:
    """A route's path as OpenAPI writes it (a `{name:path}` parameter is `{name}` there)."""
    return path.replace(":path}", "}")


def _flat(routes: list[BaseRoute]) -> list[BaseRoute]:
    """Every route, with those of included routers (FastAPI keeps an included router as one entry)."""
    out: list[BaseRoute] = []
    for route in routes:
        included = getattr(route, "original_router", None)
        out += _flat(list(included.routes)) if included is not None else [route]
    return out


def test_openapi_documents_every_route(api: Api) -> None:
    served = set()
    for route in _flat(api.routes):
        path = _template(getattr(route, "path", ""))
        if path in ("/openapi.json", "/docs", "/redoc") or path.startswith("/docs/"):
            continue
        if path == "/" or path.startswith("/app/"):  # the dashboard's pages (shells/web), not the API
            continue
        served |= {(path, m.lower()) for m in getattr(route, "methods", None) or () if m not in ("HEAD", "OPTIONS")}
    documented = {(path, method) for path, item in api.openapi["paths"].items() for method in item}
    assert served == documented
    assert len(served) >= 30  # 25 collector routes, /health, 2 profile routes, 3 segment routes
    batch = api.openapi["paths"]["/v1/batch"]["post"]
    assert batch["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SegmentBatch"
    }
    assert "SegmentEvent" in api.openapi["components"]["schemas"]
    for path, item in api.openapi["paths"].items():
        for method, operation in item.items():
            assert "422" not in operation["responses"], (path, method)  # validation errors are 400s
            if method != "get":
                assert {"200", "201", "202"} & set(operation["responses"]), (path, method)
    # reads are GET; writes (collecting events, writing a segment) never are
    gets = {path for path, item in api.openapi["paths"].items() if "get" in item}
    reads = {"/health", "/v1/profiles", "/v1/profiles/{ref}", "/v1/projects/{write_key}/settings", "/v1/segments"}
    reads |= {"/v1/push/vapid-public-key"}  # the public key pages subscribe with
    reads |= {"/v1/journeys", "/v1/journeys/{name}/stats", "/v1/persons/{person}/journeys"}  # shells/api/journeys.py
    reads |= {"/v1/auth/me", "/v1/users", "/v1/keys", "/v1/audit"}  # access (shells/api/access.py)
    reads |= {"/v1/privacy/requests", "/v1/privacy/requests/{request_id}", "/v1/privacy/consent"}  # privacy
    reads |= {"/v1/privacy/requests/{request_id}/bundle"}
    reads |= {"/v1/forms", "/v1/forms/{name}", "/v1/forms/{name}/qr", "/v1/forms/evidence/{reference}"}  # forms
    reads |= {"/v1/messages/{name}/preview"}  # shells/api/content.py
    assert reads | {"/v1/segments/{segment_id}"} <= gets
    writes = [path for path in api.openapi["paths"] if path.startswith("/v1/") and path not in reads]
    writes += ["/t", "/i", "/p", "/s", "/g", "/a", "/b"]
    assert {path for path in writes if "get" in api.openapi["paths"][path]} == {"/v1/segments/{segment_id}"}
    assert "put" in api.openapi["paths"]["/v1/segments/{segment_id}"]


def test_the_world_has_data_behind_the_routes(api: Api) -> None:
    """So that the fuzzing below reaches real answers, not only 404s."""
    auth = api.headers_for("/v1/segments")
    listed = httpx.get(f"{api.base_url}/v1/segments", headers=auth, timeout=TIMEOUT).json()
    evaluated = [s for s in listed if s["members"]]
    assert evaluated, listed
    one = httpx.get(f"{api.base_url}/v1/segments/{evaluated[0]['id']}", headers=auth, timeout=TIMEOUT).json()
    assert one["person_ids"] and one["members"] == len(one["person_ids"])
    person = httpx.get(f"{api.base_url}/v1/profiles/{one['person_ids'][0]}", headers=auth, timeout=TIMEOUT)
    assert person.status_code == 200 and person.json()["identifiers"]
    refused = httpx.get(
        f"{api.base_url}/v1/segments", headers=api.headers_for("/v1/batch"), timeout=TIMEOUT
    )  # a write key
    assert refused.status_code == 403 and refused.json()["errors"][0]["field"] == "Authorization"
    bad_limit = httpx.get(f"{api.base_url}/v1/profiles/x", params={"limit": "lots"}, headers=auth, timeout=TIMEOUT)
    assert bad_limit.status_code == 400 and bad_limit.json()["errors"][0]["field"] == "limit"


@pytest.mark.slow
def test_every_documented_route_keeps_to_its_schema(api: Api) -> None:
    schema = schemathesis.openapi.from_dict(api.openapi)
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == sum(len(item) for item in api.openapi["paths"].values())
    failures: list[str] = []
    for operation in operations:
        try:
            _fuzz(api, operation)
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, report them together
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)


def _fuzz(api: Api, operation: Any) -> None:
    """EXAMPLES requests that the operation's schema allows, each checked against its documented answers."""
    headers = api.headers_for(operation.path)

    @hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE))
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=api.base_url, headers=headers, checks=CHECKS, timeout=TIMEOUT)

    check()
