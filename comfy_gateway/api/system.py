"""/health, /queue-info and the README at /."""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path

import markdown
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from .. import __version__
from .deps import runtime_of
from .jsonresp import JSONResponse

router = APIRouter(tags=["service"])
open_router = APIRouter(tags=["service"])
README = Path(__file__).resolve().parents[2] / "README.md"
STARTED = time.time()
UNUSABLE = {"failed_until_restart", "cooling_down", "probing"}


@open_router.get("/health", summary="Each backend's state, reachability and queue (named by label, no "
                  "address); 503 when none answers or none is usable")
async def health(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    backends = await runtime.pool.health()
    # A backend that answers but is latched out (fatal GPU error) or cooling down is not usable.
    usable = sum(1 for b in backends if b["reachable"] and b["state"] not in UNUSABLE)
    healthy = sum(1 for b in backends if b["reachable"] and b["state"] == "ready")
    status = "ok" if healthy == len(backends) else "degraded" if usable else "unavailable"
    body = {
        "status": status, "version": __version__, "uptime": round(time.time() - STARTED, 1),
        "backends": backends, "queues": await runtime.store.queue_sizes(),
    }
    return JSONResponse(body, status_code=200 if usable else 503)


@router.get("/queue-info", summary="Stage queues, workers, measured durations, backends")
async def queue_info(request: Request) -> JSONResponse:
    return JSONResponse(await runtime_of(request).queue_info())


@lru_cache(maxsize=1)
def _readme_html() -> str:
    text = README.read_text(encoding="utf-8") if README.is_file() else "# comfy-gateway\n\nSee [/docs](/docs)."
    body = markdown.markdown(text, extensions=["fenced_code", "tables", "toc"])
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>comfy-gateway</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
        "line-height:1.5}pre{background:#f4f4f4;padding:1rem;overflow:auto}code{background:#f4f4f4}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem}</style>"
        f"</head><body><p><a href='/docs'>API docs</a></p>{body}</body></html>"
    )


@open_router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return HTMLResponse(_readme_html())
