"""The Redis side of a benchmark run: a key prefix of the run's own on the Redis at --redis-url
(deleted at the end, never FLUSHDB: the Redis may be shared), and the Redis commands and the
Redis server's CPU a measured phase cost, from `INFO commandstats` and `INFO cpu` read before and
after it (the server's CPU is its own, whoever it served: on a machine of 2 cores it is taken
from ComfyUI as the gateway's is).

`INFO commandstats` counts every client of the server: commands run inside a Lua script count
once each (EVALSHA itself once more); the figure for the memory store, measured the same way,
is the traffic of everyone else on the same Redis during that phase.
"""

from __future__ import annotations

import uuid
from typing import Any


def store_env(store: str, redis_url: str, prefix: str) -> dict[str, str]:
    if store == "memory":
        return {"API_CACHE": "memory"}
    return {"API_CACHE": "redis", "REDIS_URL": redis_url, "REDIS_PREFIX": prefix}


def new_prefix() -> str:
    return f"cg-bench-{uuid.uuid4().hex[:8]}:"


def _client(url: str):
    import redis

    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=10)


def delete_prefix(url: str, prefix: str) -> int:
    from comfy_gateway.jobs.redis_keys import RedisKeys  # where the gateway puts its keys

    r = _client(url)
    try:
        keys = list(r.scan_iter(match=RedisKeys(prefix).pattern, count=1000))
        for i in range(0, len(keys), 500):
            r.delete(*keys[i:i + 500])
        return len(keys)
    finally:
        r.close()


class CommandStats:
    """Commands the Redis server ran during a `with` block, by command (calls), and the CPU
    seconds (user + system) the server spent meanwhile."""

    def __init__(self, url: str):
        self.url = url
        self.calls: dict[str, int] = {}
        self.cpu_s = 0.0

    def _read(self) -> tuple[dict[str, int], float]:
        r = _client(self.url)
        try:
            info: dict[str, Any] = r.info("commandstats")
            cpu: dict[str, Any] = r.info("cpu")
        finally:
            r.close()
        calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}
        return calls, float(cpu.get("used_cpu_user", 0)) + float(cpu.get("used_cpu_sys", 0))

    def __enter__(self) -> "CommandStats":
        self._start, self._cpu_start = self._read()
        return self

    def __exit__(self, *exc: Any) -> None:
        end, cpu = self._read()
        self.calls = {k: v - self._start.get(k, 0) for k, v in end.items() if v - self._start.get(k, 0) > 0}
        self.cpu_s = cpu - self._cpu_start

    def per_job(self, jobs: int) -> dict[str, Any]:
        jobs = max(jobs, 1)
        total = sum(self.calls.values())
        scripts = sum(v for k, v in self.calls.items() if k in ("evalsha", "eval", "fcall"))
        top = sorted(self.calls.items(), key=lambda kv: -kv[1])[:8]
        return {"total": round(total / jobs, 2), "scripts": round(scripts / jobs, 2),
                "top": {k: round(v / jobs, 2) for k, v in top}, "cpu_ms": round(self.cpu_s / jobs * 1000, 3)}


def describe(per_job: dict[str, Any]) -> str:
    top = ", ".join(f"{k} {v}" for k, v in per_job["top"].items())
    return (f"{per_job['total']} commands/job ({per_job['scripts']} script calls; {top}); "
            f"Redis server CPU {per_job.get('cpu_ms', 0)} ms/job")
