"""The benchmark's HTTP client of the gateway: /generate/sync, /generate, /queue-info."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from benchlib.workloads import gateway_body


class GatewayClient:
    def __init__(self, url: str, connections: int = 32, timeout: float = 300.0):
        self.url = url
        self.timeout = timeout
        self._connections = connections
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "GatewayClient":
        # uvicorn closes idle keep-alive connections after 5 s (its default, which the gateway
        # keeps); aiohttp would reuse them for 15 s and a POST on a closing socket fails
        # ("Can not write request body"). Give up idle connections first.
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._connections, limit_per_host=self._connections,
                                           keepalive_timeout=2.0),
            timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.session:
            await self.session.close()

    async def sync(self, workflow: dict[str, Any]) -> dict[str, Any]:
        assert self.session is not None
        async with self.session.post(f"{self.url}/generate/sync?timeout={self.timeout:g}",
                                     data=gateway_body(workflow),
                                     headers={"Content-Type": "application/json"}) as resp:
            raw = await resp.read()
        body = orjson.loads(raw)
        if resp.status != 200 or body.get("status") != "completed" or not body.get("output"):
            raise RuntimeError(f"/generate/sync: HTTP {resp.status}: {raw[:500]!r}")
        return body

    async def submit(self, workflow: dict[str, Any]) -> str:
        assert self.session is not None
        async with self.session.post(f"{self.url}/generate", data=gateway_body(workflow),
                                     headers={"Content-Type": "application/json"}) as resp:
            raw = await resp.read()
        if resp.status != 202:
            raise RuntimeError(f"/generate: HTTP {resp.status}: {raw[:500]!r}")
        return orjson.loads(raw)["id"]

    async def queue_info(self) -> dict[str, Any]:
        assert self.session is not None
        async with self.session.get(f"{self.url}/queue-info") as resp:
            return orjson.loads(await resp.read())
