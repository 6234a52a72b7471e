"""Typed exceptions for what a gateway refuses, each carrying the gateway's own words."""

from __future__ import annotations

from typing import Any

import httpx


class GatewayError(Exception):
    """The gateway answered with an error (or could not be reached: status_code is None).
    `detail` is the gateway's message; `body` the whole decoded answer."""

    def __init__(self, detail: str, status_code: int | None = None, body: Any = None,
                 retry_after: float | None = None):
        super().__init__(f"{status_code}: {detail}" if status_code else detail)
        self.detail, self.status_code, self.body, self.retry_after = detail, status_code, body, retry_after


class GatewayUnreachable(GatewayError):
    """No answer at all: wrong URL, gateway down, network error."""


class InvalidRequest(GatewayError):
    """400, 413, 415, 422: the request was malformed, too big or did not fit the schema."""


class Unauthorized(GatewayError):
    """401: API_KEYS is set on the gateway and the key was missing or wrong."""


class NotFound(GatewayError):
    """404: unknown job id (or its result expired), or no such file or route."""


class Conflict(GatewayError):
    """409: request_id used by another request, or cancel of a job that already ended
    (then `job_status` says how it ended)."""

    @property
    def job_status(self) -> str | None:
        return self.body.get("status") if isinstance(self.body, dict) else None


class QueueFull(GatewayError):
    """429: MAX_QUEUE_SIZE jobs are waiting; `retry_after` says when to try again."""


class NotSupported(GatewayError):
    """501: the request uses a field this gateway version does not serve yet."""


class Unavailable(GatewayError):
    """503: the gateway is shutting down (retry_after set) or no backend answers."""


class ServerError(GatewayError):
    """Any other 5xx."""


_BY_STATUS: dict[int, type[GatewayError]] = {
    400: InvalidRequest, 401: Unauthorized, 404: NotFound, 409: Conflict, 413: InvalidRequest,
    415: InvalidRequest, 422: InvalidRequest, 429: QueueFull, 501: NotSupported, 503: Unavailable,
}


def error_for(response: httpx.Response) -> GatewayError:
    """The typed exception for an error answer (its body must have been read)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    detail = body.get("detail") if isinstance(body, dict) else None
    if not isinstance(detail, str):
        detail = str(detail if detail is not None else body)[:2000] or response.reason_phrase
    retry = response.headers.get("retry-after")
    retry_after = float(retry) if retry and retry.replace(".", "", 1).isdigit() else None
    cls = _BY_STATUS.get(response.status_code) or (ServerError if response.status_code >= 500 else GatewayError)
    return cls(detail, response.status_code, body, retry_after)


def unreachable(url: str, exc: httpx.HTTPError) -> GatewayUnreachable:
    return GatewayUnreachable(f"cannot reach the gateway at {url}: {exc or type(exc).__name__}")
