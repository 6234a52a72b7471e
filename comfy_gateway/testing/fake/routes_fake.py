"""The fake's own control routes, never under /api and never refused by the ``down`` knob:
GET/POST /fake/control (knobs), POST /fake/reset, GET /fake/stats."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from comfy_gateway.testing.fake.server import FakeComfyUI


class FakeControlRoutes:
    def __init__(self, fake: "FakeComfyUI"):
        self.fake = fake

    def routes(self) -> list[tuple[str, str, object]]:
        return [("GET", "/fake/control", self.control_get), ("POST", "/fake/control", self.control_post),
                ("POST", "/fake/reset", self.reset), ("GET", "/fake/stats", self.stats)]

    async def control_get(self, request: web.Request) -> web.Response:
        return web.json_response(self.fake.knobs)

    async def control_post(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            return web.json_response(self.fake.set(**body))
        except (ValueError, TypeError) as ex:
            return web.json_response({"error": str(ex)}, status=400)

    async def reset(self, request: web.Request) -> web.Response:
        self.fake.reset()
        return web.json_response(self.fake.knobs)

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.fake.stats)
