"""Ad audiences as a channel: a message adds or removes one person (hashed keys) to a named audience.

Two adapters with the same port (`name = "ads"`; the audience is the message's `to`):

- `FileAudienceSync(root)` appends the person's row to `<root>/<platform>/<audience>-adds.csv` or
  `-removes.csv` in the platform's upload layout (Google Customer Match `Email,Phone`, and its
  mobile ids in `<audience>-mobile-ids-adds.csv`; Meta `email,phone,madid`), ready to upload by
  hand or by a scheduled job. The header is written when a file starts.
- `HttpAudienceSync(api_base, token)` uploads it at once to a Meta-style audience API:
  `POST {api_base}/{audience}/users` (add) or `DELETE …/users` (remove) with the JSON
  `{"payload": {"schema": ["EMAIL_SHA256", "PHONE_SHA256", "MADID"], "data": [[…]]}}`, a Bearer
  token and `Idempotency-Key`; answers are read like every HTTP provider's (`http_outcome`).

A retried send may append a row twice (an ambiguous attempt); the platforms treat a repeated
member as one. Consent for advertising is checked before a message is made (the policy engine).
"""

from __future__ import annotations

import csv
import io
import os
import threading
from pathlib import Path

import httpx
import orjson

from omniweave.channels.ads.keys import check_audience, checked_keys
from omniweave.channels.port import Delivered, Message, Outcome, Transient, http_outcome
from omniweave.errors import ConfigError

LAYOUTS: dict[str, dict[str, tuple[str, dict[str, str]]]] = {
    # platform -> file suffix -> (header, key kind -> column)
    "google": {
        "": ("Email,Phone", {"email": "Email", "phone": "Phone"}),
        "-mobile-ids": ("Mobile Device ID", {"device_id": "Mobile Device ID"}),
    },
    "meta": {"": ("email,phone,madid", {"email": "email", "phone": "phone", "device_id": "madid"})},
}
SCHEMA = {"email": "EMAIL_SHA256", "phone": "PHONE_SHA256", "device_id": "MADID"}


class FileAudienceSync:
    """Audience changes appended to upload files under `root` (see the module docstring)."""

    name = "ads"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._lock = threading.Lock()

    def path(self, platform: str, audience: str, op: str, suffix: str = "") -> Path:
        """The file the `op` rows of `audience` go to."""
        return self.root / platform / f"{check_audience(audience)}{suffix}-{op}s.csv"

    def send(self, message: Message, idempotency_key: str) -> Outcome:
        """Append the person's rows to the audience's add or remove files; Delivered names the file(s)."""
        platform, op, keys = checked_keys(message.content)
        written = []
        with self._lock:
            for suffix, (header, columns) in LAYOUTS[platform].items():
                names = header.split(",")
                rows = []
                for kind, value in keys:
                    if kind in columns:
                        row = [""] * len(names)
                        row[names.index(columns[kind])] = value
                        rows.append(row)
                if not rows:
                    continue
                path = self.path(platform, message.to, op, suffix)
                path.parent.mkdir(parents=True, exist_ok=True)
                out = io.StringIO()
                writer = csv.writer(out, lineterminator="\n")
                if not path.exists():
                    writer.writerow(names)
                writer.writerows(rows)
                with path.open("a", encoding="utf-8", newline="") as handle:
                    handle.write(out.getvalue())
                    handle.flush()
                    os.fsync(handle.fileno())
                written.append(path.name)
        return Delivered(f"{platform}:{'+'.join(written)}")


class HttpAudienceSync:
    """Audience changes uploaded to a Meta-style audience API (see the module docstring)."""

    name = "ads"

    def __init__(
        self, api_base: str, token: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None
    ):
        if not api_base.startswith(("http://", "https://")):
            raise ConfigError(f"[channels.ads] api_base must be an http(s) URL, got {api_base!r}")
        if not token:
            raise ConfigError("the ads audience API needs an access token (the variable access_token_env names)")
        self.api_base = api_base.rstrip("/")
        self.client = httpx.Client(timeout=timeout, transport=transport, headers={"Authorization": f"Bearer {token}"})

    def send(self, message: Message, idempotency_key: str) -> Outcome:
        """Upload the add or remove; the API's answer as an outcome."""
        platform, op, keys = checked_keys(message.content)
        kinds = [kind for kind in SCHEMA if any(k == kind for k, _ in keys)]
        row = [next((v for k, v in keys if k == kind), "") for kind in kinds]
        body = orjson.dumps({"platform": platform, "payload": {"schema": [SCHEMA[k] for k in kinds], "data": [row]}})
        url = f"{self.api_base}/{check_audience(message.to)}/users"
        headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
        try:
            response = self.client.request("POST" if op == "add" else "DELETE", url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            return Transient(f"timeout: {type(exc).__name__}")
        except httpx.TransportError as exc:
            return Transient(f"network: {type(exc).__name__}: {exc}")
        provider_id = f"{message.to}:{op}:{idempotency_key}"
        return http_outcome(response.status_code, response.text, response.headers.get("retry-after"), provider_id)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()
