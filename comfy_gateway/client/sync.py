"""The blocking client, on httpx.Client."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import httpx
from httpx_sse import EventSource

from . import _common as c
from .errors import GatewayError, error_for, unreachable
from .models import Health, JobResult, OutputFile, QueueInfo, Readiness, StreamEvent


class Client:
    """Calls one gateway. `url` and `api_key` default to COMFY_GATEWAY_URL and
    COMFY_GATEWAY_API_KEY; `timeout` bounds connecting and each ordinary call (waiting calls,
    sync and streams, are bounded by the gateway, so their reads are not)."""

    def __init__(self, url: str | None = None, *, api_key: str | None = None, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None):
        self.url, api_key = c.resolve(url, api_key)
        self._timeout = timeout
        self._http = httpx.Client(base_url=self.url, headers=c.headers(api_key), timeout=timeout,
                                  transport=transport)
        # Waiting calls end when the gateway says so; only connecting is bounded.
        self._waiting = httpx.Timeout(timeout, read=None)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc

    # -- running jobs -----------------------------------------------------------------------
    def submit(self, workflow: dict[str, Any] | None = None, **fields: Any) -> JobResult:
        """POST /generate: queue the job; it returns once the gateway checked its inputs. Fields:
        modifier, modifications, request_id, include_previews, timeout, and any newer ones."""
        return c.result_or_raise(self._request("POST", "/generate", json=c.payload(workflow, **fields)))

    def sync(self, workflow: dict[str, Any] | None = None, *, wait: float | None = None,
             **fields: Any) -> JobResult:
        """POST /generate/sync: run and wait up to `wait` seconds (default SYNC_TIMEOUT). The
        result comes back however the job ended (check `.ok`); a job still running when the
        wait ran out comes back unfinished (`.done` is False)."""
        params = {"timeout": wait} if wait is not None else None
        r = self._request("POST", "/generate/sync", params=params, json=c.payload(workflow, **fields),
                          timeout=self._waiting)
        return c.result_or_raise(r, result_on_error=True)

    def stream(self, workflow: dict[str, Any] | None = None, **fields: Any) -> Iterator[StreamEvent]:
        """POST /generate/stream: the job's events as they come, ending with `final_result`
        (its `.result` is the whole result). The request goes out when iteration starts."""
        yield from self._events("POST", "/generate/stream", json=c.payload(workflow, **fields))

    def follow(self, job_id: str, last_event_id: str | None = None) -> Iterator[StreamEvent]:
        """GET /result/{id}/stream: follow any job; after `last_event_id` if given."""
        extra = {"Last-Event-ID": last_event_id} if last_event_id else None
        yield from self._events("GET", f"/result/{job_id}/stream", headers=extra)

    def wait(self, job_id: str) -> JobResult:
        """Follow the job to its end and return its result."""
        for event in self.follow(job_id):
            if event.result is not None:
                return event.result
        return self.result(job_id)  # the stream ended early (gateway restart): ask once more

    def _events(self, method: str, path: str, **kw: Any) -> Iterator[StreamEvent]:
        try:
            with self._http.stream(method, path, timeout=self._waiting, **kw) as r:
                if not r.is_success:
                    r.read()
                    raise error_for(r)
                for sse in EventSource(r).iter_sse():
                    event = c.stream_event(sse)
                    if event is None:
                        continue
                    yield event
                    if event.event == "final_result":
                        return
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc

    # -- reading and managing ---------------------------------------------------------------
    def result(self, job_id: str) -> JobResult:
        return c.result_or_raise(self._request("GET", f"/result/{job_id}"))

    def cancel(self, job_id: str) -> JobResult:
        """Raises Conflict (with .job_status) when the job already ended, NotFound if unknown."""
        return c.result_or_raise(self._request("POST", f"/result/{job_id}/cancel"))

    def jobs(self, limit: int = 20) -> list[JobResult]:
        """GET /jobs: the most recent jobs, newest first."""
        r = self._request("GET", "/jobs", params={"limit": limit})
        if not r.is_success:
            raise error_for(r)
        return [JobResult.model_validate(j) for j in r.json()["jobs"]]

    def queue_info(self) -> QueueInfo:
        r = self._request("GET", "/queue-info")
        if not r.is_success:
            raise error_for(r)
        return QueueInfo.model_validate(r.json())

    def ready(self) -> Readiness:
        """GET /ready; a 503 (not ready) is a Readiness with ready False and its reasons."""
        r = self._request("GET", "/ready")
        if r.status_code not in (200, 503):
            raise error_for(r)
        return Readiness.model_validate(r.json())

    def health(self) -> Health:
        """The gateway's health; a 503 (no backend answers) is a Health with status
        'unavailable', not an exception."""
        r = self._request("GET", "/health")
        if r.status_code not in (200, 503):
            raise error_for(r)
        return Health.model_validate(r.json())

    # -- files ------------------------------------------------------------------------------
    def download(self, output: OutputFile | str, out_dir: str | Path = ".", *,
                 path: str | Path | None = None) -> Path:
        """Stream one output (an OutputFile or its url) to out_dir (or exactly to `path`).
        The API key goes only to the gateway itself, never to another host (a signed S3 URL)."""
        url, target = c.download_target(output, self.url, Path(out_dir), Path(path) if path else None)
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        client = self._http if c.same_origin(url, self.url) else httpx.Client(timeout=self._timeout)
        try:
            with client.stream("GET", url, timeout=self._waiting) as r:
                if not r.is_success:
                    r.read()
                    raise error_for(r)
                with open(part, "wb") as fh:
                    for chunk in r.iter_bytes(1 << 20):
                        fh.write(chunk)
        except BaseException as exc:
            part.unlink(missing_ok=True)  # no half file left behind under a .part name
            if isinstance(exc, httpx.TransportError):
                raise unreachable(url, exc) from exc
            raise
        finally:
            if client is not self._http:
                client.close()
        part.replace(target)
        return target

    def download_all(self, result: JobResult, out_dir: str | Path = ".") -> list[Path]:
        if not result.ok:
            raise GatewayError(f"job {result.id} has no outputs to download: it is {result.status}")
        return [self.download(o, out_dir) for o in result.output]
