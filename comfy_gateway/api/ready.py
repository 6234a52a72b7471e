"""GET /ready: should a load balancer send this instance work now?

200 once at least one backend is in rotation (connected, warmed up, breaker closed, no GPU
fault latched). 503 before that, when no backend is usable, while draining, and when more
than READY_MAX_QUEUE jobs wait (in any stage; running ones do not count). Open without an
API key, and names backends by label only, like /health.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from .deps import runtime_of
from .jsonresp import JSONResponse

router = APIRouter(tags=["service"])


@router.get("/ready", summary="200 when this instance can take work now; 503 with the reasons when not",
            responses={503: {"description": "Not ready: the body's `reasons` say why"}})
async def ready(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    limit = runtime.settings.ready_max_queue
    waiting = sum((await runtime.store.queue_sizes()).values())
    backends = runtime.pool.backends
    in_rotation = [b.label for b in backends if b.in_rotation]
    reasons = []
    if runtime.draining:
        reasons.append("draining: the gateway is shutting down")
    if not in_rotation:
        states = ", ".join(f"{b.label}: {b.rotation.state(b.connected.is_set())}" for b in backends)
        reasons.append(f"no backend in rotation ({states})")
    if waiting > limit:
        reasons.append(f"{waiting} jobs waiting, more than READY_MAX_QUEUE={limit}")
    body = {"ready": not reasons, "reasons": reasons, "backends_in_rotation": in_rotation,
            "backends": len(backends), "waiting": waiting, "ready_max_queue": limit}
    return JSONResponse(body, status_code=503 if reasons else 200)
