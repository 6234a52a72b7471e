"""A real webhook receiver for the tests: an aiohttp server that checks every Standard Webhooks
signature with the standard library alone (as a receiver without our code would) and answers
what each test scripts for its path."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def verify_signature(secret: str, headers: dict[str, str], body: bytes, tolerance: float = 300) -> bool:
    """Standard Webhooks verification: HMAC-SHA256 over "<id>.<timestamp>.<body>" with the
    base64-decoded secret (without its whsec_ prefix), compared to any v1 signature given."""
    msg_id, ts, sigs = headers.get("webhook-id"), headers.get("webhook-timestamp"), headers.get("webhook-signature")
    if not (msg_id and ts and sigs) or abs(time.time() - int(ts)) > tolerance:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(s[3:], expected) for s in sigs.split() if s.startswith("v1,"))


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    answered: int

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    secret: str
    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    scripts: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses, then 200
    holds: dict[str, asyncio.Event] = field(default_factory=dict)  # path -> answer once set
    arrived: dict[str, int] = field(default_factory=dict)  # path -> requests received, held ones included
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def script(self, path: str, *statuses: int) -> str:
        self.scripts[path] = list(statuses)
        return f"{self.url}/{path}"

    def hold(self, path: str) -> tuple[str, asyncio.Event]:
        self.holds[path] = event = asyncio.Event()
        return f"{self.url}/{path}", event

    def at(self, path: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.path == path]

    async def wait_for(self, path: str, count: int, timeout: float = 60) -> list[Delivery]:
        """The deliveries to `path` once there are `count` of them; fails after `timeout` s."""
        async def enough() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.at(path)) >= count)

        try:
            await asyncio.wait_for(enough(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"{len(self.at(path))} of {count} deliveries to /{path} within {timeout}s") from None
        return self.at(path)

    async def handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        body = await request.read()
        self.arrived[path] = self.arrived.get(path, 0) + 1
        if path in self.holds:
            await self.holds[path].wait()
        queue = self.scripts.get(path) or []
        status = queue.pop(0) if queue else 200
        headers = {k.lower(): v for k, v in request.headers.items()}
        async with self._changed:
            self.deliveries.append(Delivery(path, headers, body, verify_signature(self.secret, headers, body), status))
            self._changed.notify_all()
        return web.Response(status=status, text="ok" if status < 400 else f"scripted {status}")


async def start_receiver(secret: str, port: int = 0) -> tuple[Receiver, web.AppRunner]:
    receiver = Receiver(secret)
    app = web.Application()
    app.router.add_post("/{path:.+}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}"
    return receiver, runner
