"""A fake audience API shipped in the package (an `httpx.MockTransport` handler), for offline runs and tests.

It keeps each audience's members (the first key of each uploaded row) as a set, checks the Bearer
token, answers as a Meta-style API would (`{"audience_id", "num_received"}`), and answers the
statuses of `script` first. Repeated uploads with one `Idempotency-Key` count once.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx
import orjson


class FakeAudienceApi:
    """Audiences in memory: `members[audience]` is the set of keys currently in it."""

    def __init__(self, token: str, script: Iterable[int | tuple[int, dict[str, str]]] = ()):
        self.token = token
        self.script = list(script)
        self.members: dict[str, set[str]] = {}
        self.seen_keys: set[str] = set()
        self.requests = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one upload."""
        self.requests += 1
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return httpx.Response(401, json={"error": {"message": "invalid OAuth access token", "code": 190}})
        if self.script:
            answer = self.script.pop(0)
            status, headers = answer if isinstance(answer, tuple) else (answer, {})
            return httpx.Response(status, headers=headers, json={"error": {"message": f"scripted {status}"}})
        parts = request.url.path.strip("/").split("/")
        if len(parts) < 2 or parts[-1] != "users":
            return httpx.Response(404, json={"error": {"message": "unknown path"}})
        audience = parts[-2]
        try:
            data = orjson.loads(request.read())["payload"]["data"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return httpx.Response(400, json={"error": {"message": "expected payload.data"}})
        key = request.headers.get("idempotency-key", "")
        if key not in self.seen_keys:
            self.seen_keys.add(key)
            members = self.members.setdefault(audience, set())
            for row in data:
                member = next(cell for cell in row if cell)
                if request.method == "POST":
                    members.add(member)
                else:
                    members.discard(member)
        return httpx.Response(200, json={"audience_id": audience, "num_received": len(data)})

    def transport(self) -> httpx.MockTransport:
        """This API as an httpx transport."""
        return httpx.MockTransport(self.handle)
