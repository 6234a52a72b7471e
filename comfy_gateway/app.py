"""create_app(settings): the FastAPI app; its lifespan starts and stops the runtime."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from . import __version__
from .access.signals import reload_on_sighup
from .api import assets, generate, history, metrics, modifiers, results, system, usage
from .api import v2 as api_v2
from .api import ready
from .api.auth import require_api_key
from .api.errors import install_error_handlers
from .api.jsonresp import JSONResponse
from .api.limits import BodySizeLimit
from .api.modifier_docs import install_modifier_docs
from .api.render import render_result
from .console import mount_console
from .logs import setup_logging
from .loop_lag import LoopLagSampler
from .pipeline.runtime import Runtime
from .settings import Settings

DESCRIPTION = """
A production API in front of ComfyUI. Send an API-format workflow and get its outputs back:

* `POST /generate` answers 202 with the job id at once; fetch `GET /result/{id}` later.
* `POST /generate/sync?timeout=S` waits for the result (202 and a `Location` if S passes first).
* `POST /generate/stream` follows the job as server-sent events: status, queue position,
  progress, and a last `final_result` event with the whole result.
* Instead of a workflow, name a modifier (`GET /modifiers` lists them with their parameters)
  and send its `modifications`. Image URLs, `data:` URIs and `asset://` references from
  `POST /assets` in a workflow are fetched, checked and uploaded to ComfyUI for you.

Every answer carries the same result object. A web console is at [/ui](/ui), Prometheus
metrics at `/metrics`; `/` shows the README.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    setup_logging(settings.log_format, settings.api_log_level)
    runtime = Runtime(settings, render=lambda job: render_result(job, settings.base_url))
    loop_lag = LoopLagSampler(runtime.metrics.registry, settings.loop_lag_interval)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        reload_on_sighup(runtime.keys)
        loop_lag.start()
        try:
            yield
        finally:
            await loop_lag.stop()
            if not runtime.draining:  # not drained by the server on a signal (uvicorn main:app)
                await runtime.drain(settings.shutdown_grace)
            await runtime.stop()

    app = FastAPI(title="comfy-gateway", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan, default_response_class=JSONResponse)
    app.state.runtime = runtime
    app.state.keys = runtime.keys
    install_error_handlers(app)
    protected = [Depends(require_api_key)]
    app.include_router(generate.router, dependencies=protected)
    app.include_router(results.router, dependencies=protected)
    app.include_router(history.router, dependencies=protected)
    app.include_router(usage.router, dependencies=protected)
    app.include_router(modifiers.router, dependencies=protected)
    app.include_router(assets.router, dependencies=protected)
    app.include_router(system.open_router)  # /health and the README stay open
    app.include_router(ready.router)  # open too: load balancers probe it without a key
    app.include_router(system.router, dependencies=protected)
    install_modifier_docs(app, runtime.modifiers)
    app.include_router(metrics.router, dependencies=[] if settings.metrics_open else protected)
    v2_protected, v2_open = api_v2.routers()  # the Comfy API v2 face over the same runtime
    app.include_router(v2_protected)
    app.include_router(v2_open)
    mount_console(app)  # static files only, no data: open like /docs
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origin_list, allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Last-Event-ID"],
            expose_headers=["Location", "Retry-After"],
        )
    return app
