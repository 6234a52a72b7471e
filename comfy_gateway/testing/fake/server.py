"""FakeComfyUI: wires knobs, websockets, queue, executor and routes into one server, and owns
its lifecycle (start, stop, reset, and looking like a restarted ComfyUI)."""
from __future__ import annotations

import asyncio
import os
import shutil
from typing import Any

from aiohttp import web

from comfy_gateway.testing.fake.app import make_app
from comfy_gateway.testing.fake.executor import Executor
from comfy_gateway.testing.fake.gpu import GpuRoutes
from comfy_gateway.testing.fake.hub import WebSocketHub
from comfy_gateway.testing.fake.knobs import Knobs, Stats
from comfy_gateway.testing.fake.nodes import Dirs, SaveCounters, make_nodes
from comfy_gateway.testing.fake.prompt_queue import PromptQueue
from comfy_gateway.testing.fake.nodes.models import MODEL_NODES
from comfy_gateway.testing.fake.routes_assets import AssetRoutes
from comfy_gateway.testing.fake.routes_fake import FakeControlRoutes
from comfy_gateway.testing.fake.routes_files import FileRoutes
from comfy_gateway.testing.fake.routes_prompt import PromptRoutes
from comfy_gateway.testing.fake.routes_system import SystemRoutes
from comfy_gateway.testing.fake.routes_ws import WebSocketRoute


class FakeComfyUI:
    """The fake server. ``FakeComfyUI(base_dir, **knobs)``; knobs are listed in DEFAULT_KNOBS."""

    def __init__(self, base_dir: str | os.PathLike, enable_assets: bool = False, **knobs: Any):
        self.dirs = Dirs(os.fspath(base_dir))
        shutil.rmtree(self.dirs.temp, ignore_errors=True)  # ComfyUI empties temp/ at start
        os.makedirs(self.dirs.temp, exist_ok=True)
        self.nodes = make_nodes(self.dirs)
        self.counters = SaveCounters()
        self._knobs = Knobs()
        self._stats = Stats()
        self.hub = WebSocketHub(self._knobs, self._stats)
        self.queue = PromptQueue(self._stats, self.hub.send)
        self.executor = Executor(self.nodes, self.dirs, self.counters, self._knobs, self.queue, self.hub)
        self._runner: web.AppRunner | None = None
        self.url: str | None = None
        self.host, self.port = "127.0.0.1", 0
        # One group per routes_* module, registered in this order, each route with and without /api.
        self.app = make_app(self._knobs, [
            WebSocketRoute(self._knobs, self.hub, self.queue, self.executor, self._stats),
            PromptRoutes(self.queue, self.executor, self.nodes, self._stats, self._knobs),
            FileRoutes(self.dirs),
            SystemRoutes(self.nodes),
            GpuRoutes(self._stats),
        ], FakeControlRoutes(self))
        if enable_assets:  # as ComfyUI 0.33 started with --enable-assets (routes_assets.py)
            AssetRoutes(self.dirs, self._stats).install(self.app)
            self.nodes.update({cls.NAME: cls(self.dirs) for cls in MODEL_NODES})
        self.set(**knobs)

    # ------------------------------------------------------------------ lifecycle
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> "FakeComfyUI":
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.host, self.port = host, self._runner.addresses[0][1]
        self.url = f"http://{host}:{self.port}"
        self.queue.open()
        self.hub.start()
        self.executor.start()
        return self

    async def stop(self) -> None:
        tasks = [*self.hub.stop(), *self.executor.stop()]
        await asyncio.gather(*tasks, return_exceptions=True)
        self.hub.drop_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeComfyUI":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # ---------------------------------------------------------------------- knobs
    @property
    def knobs(self) -> dict[str, Any]:
        return self._knobs.snapshot()

    @property
    def stats(self) -> dict[str, Any]:
        return {**self._stats, "ws_connections_open": self.hub.open_count, "queue_pending": self.queue.pending_count,
                "queue_remaining": self.queue.remaining(), "history_size": len(self.queue.history)}

    def set(self, **knobs: Any) -> dict[str, Any]:
        """Merge knobs (as POST /fake/control does); ``drop_ws_now``/``restart`` run once."""
        self._knobs.merge(knobs)
        if "drop_ws_after_frames" in knobs:
            self.hub.set_remaining(self._knobs["drop_ws_after_frames"])
        if knobs.get("drop_ws_now") or (knobs.get("down") and self._knobs["down"]):
            self.hub.drop_all()
        if knobs.get("restart"):
            self.restart()
        if "hang" in knobs:
            self.queue.poke()
        return self.knobs

    def reset(self) -> None:
        """Knobs back to defaults, stats zeroed, queue/history/caches forgotten (sockets stay)."""
        self._knobs.reset()
        self.hub.set_remaining(None)
        self._stats.reset()
        self._forget()

    def restart(self) -> None:
        """What a restarted ComfyUI looks like: sockets dropped, queue, history and running prompt gone."""
        self.hub.drop_all()
        self._forget()

    def _forget(self) -> None:
        self.executor.restart()
        self.hub.restart()
        self.queue.reset()
        self.executor.reset()
        self.counters.clear()
        shutil.rmtree(self.dirs.temp, ignore_errors=True)
        os.makedirs(self.dirs.temp, exist_ok=True)

    # ------------------------- read-only views of state this class held itself before the split
    @property
    def history(self) -> dict[str, dict]:
        return self.queue.history

    @property
    def number(self) -> int:
        return self.queue.number

    @property
    def client_id(self) -> str | None:
        return self.executor.client_id

    @property
    def last_node_id(self) -> str | None:
        return self.executor.last_node_id
