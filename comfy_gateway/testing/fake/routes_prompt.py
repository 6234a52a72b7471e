"""HTTP routes about prompts: POST/GET /prompt, /queue, /interrupt and /history, ported from
ComfyUI 0.3.75's server.py (same status codes, bodies and quirks)."""
from __future__ import annotations

import asyncio
import json
import uuid

from aiohttp import web

from comfy_gateway.testing.fake.executor import Executor
from comfy_gateway.testing.fake.knobs import Knobs, Stats
from comfy_gateway.testing.fake.nodes import Node
from comfy_gateway.testing.fake.prompt_queue import PromptQueue
from comfy_gateway.testing.fake.protocol import now_ms
from comfy_gateway.testing.fake.validation import validate_prompt


class PromptRoutes:
    def __init__(self, queue: PromptQueue, executor: Executor, nodes: dict[str, Node], stats: Stats,
                 knobs: Knobs | None = None):
        self.queue, self.executor, self.nodes, self._stats = queue, executor, nodes, stats
        self.knobs = knobs if knobs is not None else Knobs()

    def routes(self) -> list[tuple[str, str, object]]:
        return [("POST", "/prompt", self.post_prompt), ("GET", "/prompt", self.get_prompt),
                ("GET", "/queue", self.get_queue), ("POST", "/queue", self.post_queue),
                ("POST", "/interrupt", self.post_interrupt), ("GET", "/history", self.get_history),
                ("GET", "/history/{prompt_id}", self.get_history_id), ("POST", "/history", self.post_history)]

    async def post_prompt(self, request: web.Request) -> web.Response:
        json_data = await request.json()  # malformed JSON raises: a 500, as in ComfyUI
        if "number" in json_data:
            number = float(json_data["number"])
        else:
            number = self.queue.number
            if "front" in json_data and json_data["front"]:
                number = -number
            self.queue.number += 1
        if "prompt" not in json_data:
            self._stats["prompts_rejected"] += 1
            return web.json_response({"error": {"type": "no_prompt", "message": "No prompt provided",
                                                "details": "No prompt provided", "extra_info": {}},
                                      "node_errors": {}}, status=400)
        prompt = json_data["prompt"]
        prompt_id = str(json_data.get("prompt_id", uuid.uuid4()))
        valid = validate_prompt(self.nodes, prompt, json_data.get("partial_execution_targets"))
        extra_data = json_data.get("extra_data", {})
        if "client_id" in json_data:
            extra_data["client_id"] = json_data["client_id"]
        if not valid[0]:
            self._stats["prompts_rejected"] += 1
            return web.json_response({"error": valid[1], "node_errors": valid[3]}, status=400)
        sensitive = {k: extra_data.pop(k) for k in ("auth_token_comfy_org", "api_key_comfy_org") if k in extra_data}
        extra_data["create_time"] = now_ms()
        self._stats["prompts_received"] += 1
        self.queue.put([number, prompt_id, prompt, extra_data, valid[2], sensitive])
        if await self._answer_lost():
            return web.Response(status=self.knobs["proxy_error_status"], text="Bad Gateway")
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": valid[3]})

    async def _answer_lost(self) -> bool:
        """The prompt is queued; its answer is late (prompt_reply_delay) or replaced by a proxy's
        error (proxy_error_next): the faults that leave a client not knowing the outcome."""
        if self.knobs["prompt_reply_delay"]:
            await asyncio.sleep(self.knobs["prompt_reply_delay"])
        if self.knobs["proxy_error_next"] > 0:
            self.knobs["proxy_error_next"] -= 1
            return True
        return False

    async def get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response(self.queue.info())

    async def get_queue(self, request: web.Request) -> web.Response:
        running = [self.queue.running[:5]] if self.queue.running is not None else []
        return web.json_response({"queue_running": running,
                                  "queue_pending": [i[:5] for i in self.queue.sorted_pending()]})

    async def post_queue(self, request: web.Request) -> web.Response:
        json_data = await request.json()
        if "clear" in json_data and json_data["clear"]:
            self.queue.wipe()
        if "delete" in json_data:
            for pid in json_data["delete"]:
                self.queue.delete_pending(pid)
        return web.Response(status=200)

    async def post_interrupt(self, request: web.Request) -> web.Response:
        try:
            json_data = await request.json()
        except json.JSONDecodeError:
            json_data = {}
        self.executor.interrupt(json_data.get("prompt_id"))
        return web.Response(status=200)

    async def get_history(self, request: web.Request) -> web.Response:
        q = request.rel_url.query
        history = self.queue.history
        max_items = int(q["max_items"]) if "max_items" in q else None
        offset = int(q["offset"]) if "offset" in q else -1
        if offset < 0 and max_items is not None:
            offset = len(history) - max_items
        out: dict = {}
        for i, k in enumerate(history):
            if i >= offset:
                out[k] = history[k]
                if max_items is not None and len(out) >= max_items:
                    break
        return web.json_response(out)

    async def get_history_id(self, request: web.Request) -> web.Response:
        self._stats["history_requests"] += 1
        if self.knobs["history_fail_next"] > 0:
            self.knobs["history_fail_next"] -= 1
            return web.Response(status=500, text="500 Internal Server Error\n\nServer got itself in trouble")
        pid = request.match_info["prompt_id"]
        history = self.queue.history
        return web.json_response({pid: history[pid]} if pid in history else {})

    async def post_history(self, request: web.Request) -> web.Response:
        json_data = await request.json()
        if "clear" in json_data and json_data["clear"]:
            self.queue.history = {}
        if "delete" in json_data:
            for pid in json_data["delete"]:
                self.queue.history.pop(pid, None)
        return web.Response(status=200)
