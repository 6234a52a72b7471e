"""Each backend's /object_info (its node classes, their inputs, outputs and choices) and its
ComfyUI version, fetched once and kept until the backend reconnects: a restarted ComfyUI may
carry other custom nodes or models. Choices that change while it runs (files uploaded to its
input folder, models copied in) are fetched again, one class at a time, before a choice the
catalog does not list is believed wrong."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from .backend import Backend
from .errors import BackendError

log = logging.getLogger(__name__)


@dataclass
class NodeCatalog:
    """One backend's node classes as /object_info lists them."""

    classes: dict[str, dict[str, Any]]
    version: str | None


class ObjectInfoCache:
    def __init__(self, timeout: float):
        self._timeout = timeout
        self._catalogs: dict[str, NodeCatalog] = {}
        self._fetching: dict[str, asyncio.Task[NodeCatalog | None]] = {}
        self._watched: dict[str, bool] = {}  # backend name -> connected when last seen
        # (backend, class) -> (monotonic start, fetch) of the latest /object_info/{class}.
        self._class_fetches: dict[tuple[str, str], tuple[float, asyncio.Future[dict[str, Any]]]] = {}

    def watch(self, backend: Backend) -> None:
        """Forget the backend's catalog whenever it comes back after a gap."""
        if backend.name in self._watched:
            return
        self._watched[backend.name] = backend.connected.is_set()

        def changed() -> None:
            now = backend.connected.is_set()
            if now and not self._watched[backend.name]:
                self._catalogs.pop(backend.name, None)
            self._watched[backend.name] = now
        backend.on_change(changed)

    async def catalog(self, backend: Backend) -> NodeCatalog | None:
        """The backend's catalog, fetched on first use; None when it cannot be had now."""
        self.watch(backend)
        known = self._catalogs.get(backend.name)
        if known is not None:
            return known
        task = self._fetching.get(backend.name)
        if task is None:  # one fetch per backend, however many submissions wait for it
            task = self._fetching[backend.name] = asyncio.ensure_future(self._fetch(backend))
            task.add_done_callback(lambda _: self._fetching.pop(backend.name, None))
        return await asyncio.shield(task)

    async def _fetch(self, backend: Backend) -> NodeCatalog | None:
        try:
            async with asyncio.timeout(self._timeout):
                classes, stats = await asyncio.gather(backend.http.object_info(),
                                                      backend.http.system_stats(self._timeout))
        except (BackendError, asyncio.TimeoutError, ValueError) as exc:
            log.info("no /object_info from %s (%s): workflows are left to ComfyUI to check", backend.name, exc)
            return None
        if not isinstance(classes, dict):
            return None
        version = (stats.get("system") or {}).get("comfyui_version") if isinstance(stats, dict) else None
        catalog = NodeCatalog(classes, version if isinstance(version, str) else None)
        self._catalogs[backend.name] = catalog
        return catalog

    async def refresh_classes(self, backend: Backend, catalog: NodeCatalog, names: set[str], since: float) -> bool:
        """Fetch these classes again (their choices may have grown since the catalog was read);
        True once every one of them was read by a fetch that began at or after `since` (a
        monotonic time), so that what it lists is at least as new as the caller's question.
        Concurrent callers share such a fetch."""
        try:
            async with asyncio.timeout(self._timeout):
                answers = await asyncio.gather(*(self._class(backend, n, since) for n in names))
        except (BackendError, asyncio.TimeoutError, ValueError):
            return False
        for answer in answers:
            if isinstance(answer, dict):
                catalog.classes.update({k: v for k, v in answer.items() if isinstance(v, dict)})
        return True

    def _class(self, backend: Backend, name: str, since: float) -> asyncio.Future[dict[str, Any]]:
        key = (backend.name, name)
        known = self._class_fetches.get(key)
        usable = known is not None and known[0] >= since and not known[1].cancelled() and (
            not known[1].done() or known[1].exception() is None)
        if usable:
            return asyncio.shield(known[1])
        task = asyncio.ensure_future(backend.http.object_info(name))
        self._class_fetches[key] = (time.monotonic(), task)
        return asyncio.shield(task)
