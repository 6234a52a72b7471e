"""The asyncio client, on httpx.AsyncClient: the same calls as Client, awaited."""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import httpx
from httpx_sse import EventSource

from . import _common as c
from .errors import GatewayError, error_for, unreachable
from .models import Health, JobResult, OutputFile, QueueInfo, Readiness, StreamEvent


class AsyncClient:
    """See Client; every method is a coroutine, stream() and follow() are async iterators."""

    def __init__(self, url: str | None = None, *, api_key: str | None = None, timeout: float = 60.0,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.url, api_key = c.resolve(url, api_key)
        self._timeout = timeout
        self._http = httpx.AsyncClient(base_url=self.url, headers=c.headers(api_key), timeout=timeout,
                                       transport=transport)
        self._waiting = httpx.Timeout(timeout, read=None)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc

    # -- running jobs -----------------------------------------------------------------------
    async def submit(self, workflow: dict[str, Any] | None = None, **fields: Any) -> JobResult:
        r = await self._request("POST", "/generate", json=c.payload(workflow, **fields))
        return c.result_or_raise(r)

    async def sync(self, workflow: dict[str, Any] | None = None, *, wait: float | None = None,
                   **fields: Any) -> JobResult:
        params = {"timeout": wait} if wait is not None else None
        r = await self._request("POST", "/generate/sync", params=params, json=c.payload(workflow, **fields),
                                timeout=self._waiting)
        return c.result_or_raise(r, result_on_error=True)

    async def stream(self, workflow: dict[str, Any] | None = None, **fields: Any) -> AsyncIterator[StreamEvent]:
        async for event in self._events("POST", "/generate/stream", json=c.payload(workflow, **fields)):
            yield event

    async def follow(self, job_id: str, last_event_id: str | None = None) -> AsyncIterator[StreamEvent]:
        extra = {"Last-Event-ID": last_event_id} if last_event_id else None
        async for event in self._events("GET", f"/result/{job_id}/stream", headers=extra):
            yield event

    async def wait(self, job_id: str) -> JobResult:
        async for event in self.follow(job_id):
            if event.result is not None:
                return event.result
        return await self.result(job_id)

    async def _events(self, method: str, path: str, **kw: Any) -> AsyncIterator[StreamEvent]:
        try:
            async with self._http.stream(method, path, timeout=self._waiting, **kw) as r:
                if not r.is_success:
                    await r.aread()
                    raise error_for(r)
                async for sse in EventSource(r).aiter_sse():
                    event = c.stream_event(sse)
                    if event is None:
                        continue
                    yield event
                    if event.event == "final_result":
                        return
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc

    # -- reading and managing ---------------------------------------------------------------
    async def result(self, job_id: str) -> JobResult:
        return c.result_or_raise(await self._request("GET", f"/result/{job_id}"))

    async def cancel(self, job_id: str) -> JobResult:
        return c.result_or_raise(await self._request("POST", f"/result/{job_id}/cancel"))

    async def jobs(self, limit: int = 20) -> list[JobResult]:
        r = await self._request("GET", "/jobs", params={"limit": limit})
        if not r.is_success:
            raise error_for(r)
        return [JobResult.model_validate(j) for j in r.json()["jobs"]]

    async def queue_info(self) -> QueueInfo:
        r = await self._request("GET", "/queue-info")
        if not r.is_success:
            raise error_for(r)
        return QueueInfo.model_validate(r.json())

    async def ready(self) -> Readiness:
        """GET /ready; a 503 (not ready) is a Readiness with ready False and its reasons."""
        r = await self._request("GET", "/ready")
        if r.status_code not in (200, 503):
            raise error_for(r)
        return Readiness.model_validate(r.json())

    async def health(self) -> Health:
        r = await self._request("GET", "/health")
        if r.status_code not in (200, 503):
            raise error_for(r)
        return Health.model_validate(r.json())

    # -- files ------------------------------------------------------------------------------
    async def download(self, output: OutputFile | str, out_dir: str | Path = ".", *,
                       path: str | Path | None = None) -> Path:
        url, target = c.download_target(output, self.url, Path(out_dir), Path(path) if path else None)
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        client = self._http if c.same_origin(url, self.url) else httpx.AsyncClient(timeout=self._timeout)
        try:
            async with client.stream("GET", url, timeout=self._waiting) as r:
                if not r.is_success:
                    await r.aread()
                    raise error_for(r)
                # Small blocking writes of <=1 MiB chunks: cheaper than a thread hop per chunk.
                with open(part, "wb") as fh:
                    async for chunk in r.aiter_bytes(1 << 20):
                        fh.write(chunk)
        except BaseException as exc:
            part.unlink(missing_ok=True)
            if isinstance(exc, httpx.TransportError):
                raise unreachable(url, exc) from exc
            raise
        finally:
            if client is not self._http:
                await client.aclose()
        part.replace(target)
        return target

    async def download_all(self, result: JobResult, out_dir: str | Path = ".") -> list[Path]:
        if not result.ok:
            raise GatewayError(f"job {result.id} has no outputs to download: it is {result.status}")
        return [await self.download(o, out_dir) for o in result.output]
