"""Several gateway processes sharing one Redis (a key prefix of their own) and one OUTPUT_DIR,
as a deployment of API_WORKERS > 1 or several hosts on a shared volume is."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx
import redis

from .procs import Proc, start_gateway
from comfy_gateway.jobs.redis_keys import RedisKeys

from .redis import REDIS_URL, new_prefix
from .sse import collect


class Node:
    def __init__(self, proc: Proc, url: str, output_dir: Path):
        self.proc, self.url, self.output_dir = proc, url, output_dir

    def kill(self) -> None:
        """kill -9: no shutdown code runs, leases are left behind."""
        self.proc.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.proc.output()


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.prefix = new_prefix()
        self.output_dir = root / "outputs"
        self.nodes: list[Node] = []

    def start(self, comfy_url: str, **env: Any) -> Node:
        settings = {"COMFYUI_API_BASE": comfy_url, "OUTPUT_DIR": str(self.output_dir), "SSE_PING_SECONDS": "1",
                    "API_CACHE": "redis", "REDIS_URL": REDIS_URL, "REDIS_PREFIX": self.prefix,
                    "LEASE_SECONDS": "2"}
        settings.update({k.upper(): str(v) for k, v in env.items()})
        home = self.root / f"gateway{len(self.nodes)}"
        home.mkdir(parents=True)
        proc, url = start_gateway(settings, home / "gateway.log", cwd=home)
        node = Node(proc, url, self.output_dir)
        self.nodes.append(node)
        return node

    def stop(self) -> None:
        for node in self.nodes:
            node.proc.stop()
        r = redis.Redis.from_url(REDIS_URL)
        try:
            keys = list(r.scan_iter(match=RedisKeys(self.prefix).pattern, count=1000))
            for i in range(0, len(keys), 500):
                r.delete(*keys[i:i + 500])
        finally:
            r.close()


async def final_result(client: httpx.AsyncClient, node: Node, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """Follow a job's stream on `node` to its final_result and return the result object."""
    stream = await asyncio.wait_for(collect(client, "GET", f"{node.url}/result/{job_id}/stream"), timeout)
    assert stream.status_code == 200, (stream.status_code, job_id)
    assert stream.events and stream.events[-1].event == "final_result", [e.event for e in stream.events]
    return stream.events[-1].data["result"]
