"""GET /metrics: Prometheus text format (or OpenMetrics when the scraper asks for it)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client.exposition import choose_encoder

from ..pipeline.observe import snapshot
from .deps import runtime_of

router = APIRouter(tags=["service"])


@router.get("/metrics", response_class=Response, summary="Prometheus metrics",
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
async def metrics(request: Request) -> Response:
    runtime = runtime_of(request)
    # Read the present first; rendering right after, with no await between, shows one moment.
    runtime.metrics.present.snapshot = await snapshot(runtime)
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(runtime.metrics.registry), media_type=content_type)
