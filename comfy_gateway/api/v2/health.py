"""GET /api/v2/health: open like the gateway's /health, so a scheduler can probe without a key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..deps import runtime_of
from ..jsonresp import JSONResponse
from .errors import V2Route

router = APIRouter(route_class=V2Route, tags=["v2"])


@router.get("/health", summary="healthy while a ComfyUI backend is in rotation (503 when none is)")
async def health(request: Request) -> Response:
    backends = runtime_of(request).pool.backends
    up = sum(1 for b in backends if b.connected.is_set())
    body = {"status": "healthy" if up else "unhealthy", "backends": {"in_rotation": up, "total": len(backends)}}
    return JSONResponse(body, status_code=200 if up else 503)
