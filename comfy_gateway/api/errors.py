"""Every client mistake becomes a 4xx whose body says what was wrong and where."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError

from ..jobs.store import KeyQueueFull, QueueFull
from ..pipeline.idempotency import DuplicateRequest
from .jsonresp import JSONResponse

log = logging.getLogger(__name__)
from ..workflows.params import InvalidModifications
from ..workflows.registry import UnknownModifier


def _where(loc: tuple | list) -> str:
    return ".".join(str(p) for p in loc if p != "body") or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        content_type = request.headers.get("content-type", "")
        if request.method == "POST" and "json" not in content_type:
            # Bodies are read as JSON only when declared so: a page in a browser cannot then
            # post a form to a gateway on localhost (CSRF). Say so instead of a schema error.
            return JSONResponse(status_code=415, content={
                "detail": f"send the body as JSON with 'Content-Type: application/json' "
                          f"(got {content_type or 'no Content-Type'})"})
        if any(e["type"] == "json_invalid" for e in errors):
            first = next(e for e in exc.errors() if e.get("type") == "json_invalid")
            ctx = first.get("ctx") or {}
            return JSONResponse(status_code=400, content={
                "detail": f"malformed JSON body: {ctx.get('error', 'cannot be parsed')}", "errors": errors})
        summary = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in errors[:5])
        return JSONResponse(status_code=422, content={"detail": f"invalid request: {summary}", "errors": errors})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, never the client's fault: log it whole, answer without internals.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(status_code=500, content={
            "detail": f"internal error ({type(exc).__name__}); the gateway log has the details"})
    @app.exception_handler(UnknownModifier)
    async def unknown_modifier(request: Request, exc: UnknownModifier) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": f"input.modifier: {exc}", "known": exc.known})

    @app.exception_handler(InvalidModifications)
    async def invalid_modifications(request: Request, exc: InvalidModifications) -> JSONResponse:
        errors = [{**e, "loc": ["input", *e["loc"]]} for e in exc.errors]
        summary = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in errors[:5])
        return JSONResponse(status_code=422, content={
            "detail": f"invalid modifications for modifier {exc.modifier!r}: {summary}", "errors": errors})

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, exc: QueueFull) -> JSONResponse:
        runtime = request.app.state.runtime
        return JSONResponse(
            status_code=429, headers={"Retry-After": str(runtime.retry_after())},
            content={"detail": f"the queue is full: {exc}; retry later (MAX_QUEUE_SIZE)"},
        )

    @app.exception_handler(KeyQueueFull)
    async def key_queue_full(request: Request, exc: KeyQueueFull) -> JSONResponse:
        runtime = request.app.state.runtime
        return JSONResponse(
            status_code=429, headers={"Retry-After": str(runtime.retry_after())},
            content={"detail": f"{exc}; retry when one of them has ended"},
        )

    @app.exception_handler(DuplicateRequest)
    async def duplicate(request: Request, exc: DuplicateRequest) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc)})
