"""GET /ws: the websocket route. A new socket first gets ``status`` with its sid, then, if a
prompt of its clientId is running, the node running now (as ComfyUI's server.py sends them)."""
from __future__ import annotations

from aiohttp import web

from comfy_gateway.testing.fake.executor import Executor
from comfy_gateway.testing.fake.hub import WebSocketHub
from comfy_gateway.testing.fake.knobs import Knobs, Stats
from comfy_gateway.testing.fake.prompt_queue import PromptQueue
from comfy_gateway.testing.fake.protocol import frame


class WebSocketRoute:
    def __init__(self, knobs: Knobs, hub: WebSocketHub, queue: PromptQueue, executor: Executor,
                 stats: Stats):
        self._knobs, self.hub, self.queue, self.executor, self._stats = knobs, hub, queue, executor, stats

    def routes(self) -> list[tuple[str, str, object]]:
        return [("GET", "/ws", self.ws)]

    async def ws(self, request: web.Request) -> web.StreamResponse:
        if self._knobs["refuse_ws"]:
            self._stats["ws_connections_refused"] += 1
            return web.Response(status=503)
        s = await self.hub.connect(request)
        try:
            await self.hub.send_now(s, frame("status", {"status": self.queue.info(), "sid": s.sid}))
            node = self.executor.resume_node(s.sid)
            if node is not None:
                await self.hub.send_now(s, frame("executing", {"node": node}))
            await self.hub.listen(s)
        finally:
            self.hub.release(s)
        return s.ws
