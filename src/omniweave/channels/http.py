"""A lean HTTP client for the provider adapters' hot path: urllib3 connection pools behind httpx's shapes.

The adapters are written against `httpx` (requests, responses, its exception types, and its
`MockTransport`, with which every channel ships a fake). httpx costs several hundred microseconds of
CPU per request, which caps a sender near 1,000 requests/s on two cores; urllib3 does the same
request for about a third of that. `PooledClient.post` keeps httpx's call shape and answers an
`httpx.Response`, and raises httpx's exception types, so an adapter takes either client:

- a failure before the request went out (refused, DNS, connect timeout, no free connection) is
  `httpx.ConnectError` / `httpx.ConnectTimeout` (safe to retry);
- a failure after it may have gone out (read timeout, connection reset mid-answer) is
  `httpx.ReadError` / `httpx.ReadTimeout` (the outcome is unknown: never resent blindly).

urllib3's own retries are off: a retry is the dispatcher's decision, under the ledger's key.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import httpx
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    EmptyPoolError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)


class PooledClient:
    """`post` over a urllib3 pool of up to `connections` kept-alive connections per host."""

    def __init__(self, *, timeout: float = 15.0, connections: int = 16):
        self._pool = urllib3.PoolManager(
            num_pools=8,
            maxsize=connections,
            block=True,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=False,
        )

    def post(
        self,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        content: bytes | None = None,
        json: Any = None,
        auth: tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """POST a form (`data`), raw bytes (`content`) or JSON; the answer as an httpx.Response."""
        sent: dict[str, str] = dict(headers or {})
        if data is not None:
            body = urlencode(data).encode()
            sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif json is not None:
            import orjson

            body = orjson.dumps(json)
            sent.setdefault("Content-Type", "application/json")
        else:
            body = content or b""
        if auth is not None:
            sent["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request = httpx.Request("POST", url)  # for the exceptions' and the response's `request`
        try:
            answer = self._pool.request("POST", url, body=body, headers=sent, retries=False, redirect=False)
        except (NewConnectionError, NameResolutionError, EmptyPoolError) as exc:  # before ConnectTimeoutError,
            raise httpx.ConnectError(str(exc), request=request) from exc  # which NewConnectionError subclasses
        except ConnectTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc), request=request) from exc
        except ReadTimeoutError as exc:
            raise httpx.ReadTimeout(str(exc), request=request) from exc
        except (ProtocolError, OSError) as exc:
            raise httpx.ReadError(str(exc), request=request) from exc
        except urllib3.exceptions.HTTPError as exc:  # anything else urllib3 raises mid-request
            raise httpx.ReadError(str(exc), request=request) from exc
        return httpx.Response(answer.status, headers=list(answer.headers.items()), content=answer.data, request=request)

    def close(self) -> None:
        """Close every kept-alive connection."""
        self._pool.clear()
