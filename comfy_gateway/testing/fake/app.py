"""The aiohttp application: every ComfyUI route with and without the ``/api`` prefix, the
fake's /fake/ routes, and a middleware that answers errors the way ComfyUI's server does."""
from __future__ import annotations

import logging
from typing import Callable, Protocol

from aiohttp import web

from comfy_gateway.testing.fake.knobs import Knobs
from comfy_gateway.testing.fake.protocol import MAX_UPLOAD_SIZE

log = logging.getLogger(__name__)

TEXT_500 = "500 Internal Server Error\n\nServer got itself in trouble"


class RouteGroup(Protocol):
    def routes(self) -> list[tuple[str, str, Callable]]: ...


def make_app(knobs: Knobs, comfy_routes: list[RouteGroup], fake_routes: RouteGroup) -> web.Application:
    app = web.Application(client_max_size=MAX_UPLOAD_SIZE, middlewares=[_middleware(knobs)])
    for group in comfy_routes:
        for method, path, handler in group.routes():
            app.router.add_route(method, "/api" + path, handler)
            app.router.add_route(method, path, handler)
    for method, path, handler in fake_routes.routes():
        if method == "GET":
            app.router.add_get(path, handler)
        else:
            app.router.add_post(path, handler)
    return app


def _middleware(knobs: Knobs):
    @web.middleware
    async def middleware(request: web.Request, handler):
        if knobs["down"] and not request.path.startswith("/fake/"):
            return web.Response(status=503)
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return web.Response(status=404)  # ComfyUI's static catch-all answers an empty 404
        except web.HTTPMethodNotAllowed:
            if request.method in ("GET", "HEAD"):  # e.g. GET /interrupt: the static route again
                return web.Response(status=404)
            raise
        except web.HTTPException:
            raise
        except Exception:  # aiohttp's own answer to an unhandled exception
            log.debug("handler error on %s %s", request.method, request.path, exc_info=True)
            return web.Response(status=500, text=TEXT_500)

    return middleware
