"""All configured backends, their shared HTTP session, and their health."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from .backend import Backend
from .errors import BackendError
from .naming import redact


class BackendPool:
    def __init__(self, urls: list[str], *, timeout: float, lost_after: float, reconcile_interval: float = 5.0,
                 labels: list[str] | None = None):
        self._urls = urls
        self._reconcile_interval = reconcile_interval
        self._labels = labels or [f"backend-{i}" for i in range(len(urls))]
        self._timeout = timeout
        self._lost_after = lost_after
        self._session: aiohttp.ClientSession | None = None
        self.backends: list[Backend] = []

    async def start(self) -> None:
        # One pooled session for every backend; limit_per_host bounds sockets per ComfyUI.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=64, ttl_dns_cache=300),
        )
        self.backends = [
            Backend(url, self._session, timeout=self._timeout, lost_after=self._lost_after,
                    reconcile_interval=self._reconcile_interval, label=label)
            for url, label in zip(self._urls, self._labels)
        ]
        for backend in self.backends:
            await backend.start()

    async def stop(self) -> None:
        await asyncio.gather(*(b.stop() for b in self.backends), return_exceptions=True)
        if self._session:
            await self._session.close()

    async def health(self, timeout: float = 3.0) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self._one_health(i, b, timeout) for i, b in enumerate(self.backends))))

    @staticmethod
    async def _one_health(index: int, backend: Backend, timeout: float) -> dict[str, Any]:
        # Open without a key: names by label and index, never an address (see naming.py).
        connected = backend.connected.is_set()
        info: dict[str, Any] = {
            "name": backend.label, "index": index, "state": backend.rotation.state(connected),
            "reachable": False, "websocket_connected": connected, "in_rotation": backend.in_rotation,
            "in_flight": backend.in_flight, "queue_remaining": backend.queue_remaining,
            **backend.rotation.view(),
        }
        for key in ("warmup_error", "fatal_error"):  # texts that may name the address
            info[key] = redact(info[key], backend.url, backend.label)
        try:
            async with asyncio.timeout(timeout):
                stats, queue = await asyncio.gather(backend.http.system_stats(timeout), backend.http.queue())
            info["reachable"] = True
            info["comfyui_version"] = (stats.get("system") or {}).get("comfyui_version")
            info["queue_running"] = len(queue.get("queue_running", []))
            info["queue_pending"] = len(queue.get("queue_pending", []))
        except (BackendError, asyncio.TimeoutError) as exc:
            info["error"] = redact(str(exc), backend.url, backend.label) or "timed out"
        return info
