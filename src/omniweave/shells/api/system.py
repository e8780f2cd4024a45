"""`GET /health`: liveness, the committer's counters and the loader's lag (collect/status.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from omniweave.collect.status import inbox_progress
from omniweave.shells.api.deps import RuntimeDep
from omniweave.shells.api.schemas import Health, HealthError

router = APIRouter(tags=["system"])


@router.get("/health", response_model=Health, responses={503: {"model": HealthError}}, summary="Liveness and lag")
def health(request: Request, runtime: RuntimeDep) -> Any:
    """Liveness plus how far the loader is behind the inbox, and its last error; 503 if the store is down."""
    collector = request.app.state.collector
    loader = request.app.state.loader
    try:
        progress = inbox_progress(runtime)
    except Exception as exc:  # noqa: BLE001 - the store is down (any driver's error): say so, with the reason
        body = HealthError(error=f"{type(exc).__name__}: {exc}")
        return Response(body.model_dump_json(), status_code=503, media_type="application/json")
    return {
        "status": "ok",
        "inbox_last_seq": progress.last_seq,
        "collector": collector.committer.stats(),
        "loader": {
            "running": bool(loader and loader.running),
            "position": progress.loader_position,
            "lag": progress.lag,
            "last_error": loader.last_error if loader else None,
            "restarts": loader.restarts if loader else 0,
        },
    }
