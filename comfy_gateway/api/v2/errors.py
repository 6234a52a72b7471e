"""The Comfy API v2 error envelope, {"error": {code, message, details}}, with the codes the
official SDK maps to its exceptions (comfy_low.errors): every refusal a v2 route makes, and
every one the shared machinery raises on its way (the API key check, request validation,
a full queue), answered in that shape instead of the gateway's own {"detail": ...}."""

from __future__ import annotations

from typing import Any, Callable, Coroutine

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from ...jobs.store import QueueFull
from ..jsonresp import JSONResponse

# HTTP status -> code, for refusals raised as HTTPException by code shared with the gateway's API.
_CODE_BY_STATUS = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                   409: "conflict", 413: "payload_too_large", 415: "invalid_request", 422: "invalid_request",
                   429: "queue_full", 501: "not_implemented", 503: "unavailable"}


class V2Error(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.headers = details, headers


def envelope(status: int, code: str, message: str, details: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": details}},
                        status_code=status, headers=headers)


def not_found(what: str, ident: str) -> V2Error:
    return V2Error(404, "not_found", f"no {what} {ident!r} (unknown, or expired)")


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "the body is not valid JSON"
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg', '')}"
             for e in errors[:5]]
    return 422, "invalid request: " + "; ".join(parts)


class V2Route(APIRoute):
    """Routes of the v2 face: whatever a request raises leaves as the v2 envelope."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except V2Error as exc:
                return envelope(exc.status, exc.code, exc.message, exc.details, exc.headers)
            except HTTPException as exc:
                code = _CODE_BY_STATUS.get(exc.status_code, f"http_{exc.status_code}")
                return envelope(exc.status_code, code, str(exc.detail), headers=exc.headers)
            except RequestValidationError as exc:
                status, message = _validation_message(exc)
                return envelope(status, "invalid_request", message)
            except QueueFull as exc:
                retry = str(request.app.state.runtime.retry_after())
                return envelope(429, "queue_full", f"the queue is full: {exc}; retry later",
                                headers={"Retry-After": retry})

        return route
