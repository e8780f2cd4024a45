"""Every refusal of the REST API has one shape, built here: `{"success": false, "errors": [...], "message"}`.

Routers raise `ApiError` (or let an `InputError` from a service through); `install_error_handlers`
turns those, FastAPI's own validation errors and Starlette's 404/405 into that body, so a client
reads one shape whatever went wrong. (The collector's raw routes keep their own, SDK-compatible body:
collect/http/routes.py `error_response`.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from omniweave.errors import AuthError, InputError, StoreError

Problems = Sequence[tuple[str | None, str]]


def error_body(message: str, problems: Problems) -> dict[str, Any]:
    """The API's error shape: every problem as {index, field, reason}, and a message."""
    return {
        "success": False,
        "errors": [{"index": None, "field": field, "reason": reason} for field, reason in problems],
        "message": message,
    }


def error_response(status: int, message: str, problems: Problems, headers: Mapping[str, str] | None = None) -> Response:
    """`error_body` as a JSON response with `status`."""
    body = orjson.dumps(error_body(message, problems))
    return Response(body, status_code=status, media_type="application/json", headers=headers)


class ApiError(Exception):
    """A refusal a router decides on: the status and each problem (field, reason)."""

    def __init__(self, status: int, field: str | None, reason: str):
        super().__init__(reason)
        self.status = status
        self.problems: list[tuple[str | None, str]] = [(field, reason)]


def input_problems(exc: InputError, default_field: str | None = None) -> list[tuple[str | None, str]]:
    """Each problem of an InputError (a SegmentError lists several, with their paths)."""
    listed = getattr(exc, "problems", None)
    if listed:
        return [(field or None, reason) for field, reason in listed]
    return [(exc.field or default_field, str(exc))]


def _where(location: Sequence[Any]) -> str:
    """`("query", "limit")` → `limit`; `("body", "where", 0)` → `where[0]`."""
    out = ""
    for part in location[1:] if len(location) > 1 else location:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def _api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, str(exc), exc.problems)


async def _input_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InputError)
    return error_response(400, str(exc), input_problems(exc))


async def _auth_error(_request: Request, exc: Exception) -> Response:
    return error_response(401, str(exc), [("Authorization", str(exc))])


async def _store_error(_request: Request, exc: Exception) -> Response:
    reason = f"the store failed, retry: {exc}"
    return error_response(503, reason, [(None, reason)], headers={"retry-after": "1"})


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [
        (_where(e.get("loc", ())) or None, f"{e.get('msg', 'invalid')}; got {_short(e.get('input'))}")
        for e in exc.errors()
    ]
    message = problems[0][1] if len(problems) == 1 else f"{len(problems)} problems; the first: {problems[0][1]}"
    return error_response(400, message, problems)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    reason = str(exc.detail)
    return error_response(exc.status_code, reason, [(None, reason)], headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Route every error a handler can meet to the one error shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(AuthError, _auth_error)
    app.add_exception_handler(StoreError, _store_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
