"""GET /metrics: Prometheus text format (or OpenMetrics when the scraper asks for it)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from prometheus_client.exposition import choose_encoder

from ..pipeline.observe import snapshot
from .auth import current_key
from .deps import runtime_of

router = APIRouter(tags=["service"])


@router.get("/metrics", response_class=Response, summary="Prometheus metrics",
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
                       403: {"description": "A key of API_KEYS_FILE that is not an admin"}})
async def metrics(request: Request) -> Response:
    if not current_key(request).sees_all():
        # Counters labelled by key name show every client's usage: not for one client's key.
        raise HTTPException(403, detail="/metrics shows every key's usage: it needs an admin key of API_KEYS_FILE "
                                        "(or METRICS_OPEN=true on a private network)")
    runtime = runtime_of(request)
    # Read the present first; rendering right after, with no await between, shows one moment.
    runtime.metrics.present.snapshot = await snapshot(runtime)
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(runtime.metrics.registry), media_type=content_type)
