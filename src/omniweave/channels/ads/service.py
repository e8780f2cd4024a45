"""The ads channel of a Runtime: audience files under the home, or uploads to the configured API."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from omniweave.channels.ads.adapter import FileAudienceSync, HttpAudienceSync
from omniweave.channels.ads.fake import FakeAudienceApi
from omniweave.errors import ConfigError
from omniweave.runtime import Runtime


def audiences_folder(runtime: Runtime) -> Path:
    """Where audience files go: `[channels.ads] folder` under the home (or that folder when absolute)."""
    folder = Path(runtime.settings.channels.ads.folder)
    return folder if folder.is_absolute() else Path(runtime.settings.home) / folder


def open_ads_channel(
    runtime: Runtime, *, transport: httpx.BaseTransport | None = None, fake: bool = False
) -> FileAudienceSync | HttpAudienceSync:
    """The ads channel `[channels.ads] mode` asks for (file by default); the API token only from the environment.

    `fake` with mode http: the shipped fake audience API instead of the network."""
    ads = runtime.settings.channels.ads
    if ads.mode == "file":
        return FileAudienceSync(audiences_folder(runtime))
    token = os.environ.get(ads.access_token_env, "")
    if fake:
        token = token or "fake-token"
        api_base = ads.api_base or "https://audiences.example.invalid/v1"
        return HttpAudienceSync(api_base, token, transport=FakeAudienceApi(token).transport())
    if not token:
        raise ConfigError(f"[channels.ads] mode = http needs the access token in ${ads.access_token_env}")
    return HttpAudienceSync(ads.api_base, token, timeout=ads.timeout_seconds, transport=transport)
