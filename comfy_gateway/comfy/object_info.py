"""Each backend's /object_info (its node classes, their inputs, outputs and choices) and its
ComfyUI version, fetched once and kept until the backend reconnects: a restarted ComfyUI may
carry other custom nodes or models. Choices that change while it runs (files uploaded to its
input folder, models copied in) are fetched again one class at a time, at most every
CLASS_REFRESH_SECONDS."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from .backend import Backend
from .errors import BackendError

log = logging.getLogger(__name__)

CLASS_REFRESH_SECONDS = 2.0


@dataclass
class NodeCatalog:
    """One backend's node classes as /object_info lists them."""

    classes: dict[str, dict[str, Any]]
    version: str | None
    refreshed: dict[str, float] = field(default_factory=dict)  # class -> monotonic time of its last fetch


class ObjectInfoCache:
    def __init__(self, timeout: float):
        self._timeout = timeout
        self._catalogs: dict[str, NodeCatalog] = {}
        self._fetching: dict[str, asyncio.Task[NodeCatalog | None]] = {}
        self._watched: dict[str, bool] = {}  # backend name -> connected when last seen

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
            classes, stats = await asyncio.wait_for(
                asyncio.gather(backend.http.object_info(), backend.http.system_stats(self._timeout)), self._timeout)
        except (BackendError, asyncio.TimeoutError, ValueError) as exc:
            log.info("no /object_info from %s (%s): workflows are left to ComfyUI to check", backend.name, exc)
            return None
        if not isinstance(classes, dict):
            return None
        version = (stats.get("system") or {}).get("comfyui_version") if isinstance(stats, dict) else None
        catalog = NodeCatalog(classes, version if isinstance(version, str) else None)
        self._catalogs[backend.name] = catalog
        return catalog

    async def refresh_classes(self, backend: Backend, catalog: NodeCatalog, names: set[str]) -> bool:
        """Fetch these classes again (their choices may have grown); True if any was fetched."""
        now = time.monotonic()
        due = [n for n in names if now - catalog.refreshed.get(n, 0.0) >= CLASS_REFRESH_SECONDS]
        for name in due:
            catalog.refreshed[name] = now
        if not due:
            return False
        try:
            answers = await asyncio.wait_for(
                asyncio.gather(*(backend.http.object_info(n) for n in due)), self._timeout)
        except (BackendError, asyncio.TimeoutError, ValueError):
            return False
        for answer in answers:
            if isinstance(answer, dict):
                catalog.classes.update({k: v for k, v in answer.items() if isinstance(v, dict)})
        return True
