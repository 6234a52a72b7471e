"""Previews between gateway processes that share a Redis (API_CACHE=redis): the job runs in
one process, its readers may be in any other.

The process running the job publishes each preview on one channel of the service and keeps
the latest under a key for LATEST_TTL seconds (for a follower who arrives late). Publishing
never queues: per job, one publish is in flight and only the newest preview waits behind it,
so a slow Redis drops stale previews rather than slow the backend's websocket. Each process
listens on the channel and hands a preview to its own hub only when it has a reader of that
job. Pub/sub keeps nothing: previews stay out of the job's stored events here too.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid

import orjson
from redis.asyncio import Redis

from ..comfy.previews import Preview
from ..jobs.redis_keys import RedisKeys
from ..reconnect import Reconnecting
from .preview_hub import PreviewEvent, PreviewHub

log = logging.getLogger(__name__)

LATEST_TTL = 120  # seconds the latest preview of a job stays readable in Redis


class RedisPreviewRelay:
    def __init__(self, redis: Redis, keys: RedisKeys, hub: PreviewHub):
        self._redis, self._keys = redis, keys
        self._channel = keys.previews_channel
        self._hub = hub
        self._origin = uuid.uuid4().hex  # this process: its own messages come back to it
        self._waiting: dict[str, PreviewEvent] = {}  # per job, the newest not yet published
        self._sending: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: asyncio.Task[None] | None = None
        hub.relay = self

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="preview-relay")

    async def stop(self) -> None:
        for task in [self._listener, *self._tasks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in [self._listener, *self._tasks] if t is not None), return_exceptions=True)

    # -- the process running the job ------------------------------------------------------------
    def published(self, job_id: str, event: PreviewEvent) -> None:
        """Called by the hub for each preview of a job running here (never awaits)."""
        self._waiting[job_id] = event  # replaces one not yet sent: it is stale now
        if job_id not in self._sending:
            self._sending.add(job_id)
            self._spawn(self._send(job_id))

    async def _send(self, job_id: str) -> None:
        try:
            while job_id in self._waiting:
                payload = _encode(self._origin, job_id, self._waiting.pop(job_id))
                try:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        pipe.set(self._keys.preview(job_id), payload, ex=LATEST_TTL)
                        pipe.publish(self._channel, payload)
                        await pipe.execute()
                except Exception as exc:  # noqa: BLE001 - a preview lost is no job lost
                    log.debug("preview of job %s not relayed: %s", job_id, exc)
        finally:
            self._sending.discard(job_id)

    def forget(self, job_id: str) -> None:
        self._waiting.pop(job_id, None)
        self._spawn(self._delete(job_id))

    async def _delete(self, job_id: str) -> None:
        try:
            await self._redis.delete(self._keys.preview(job_id))
        except Exception:  # noqa: BLE001 - it expires anyway
            pass

    # -- every process with readers ---------------------------------------------------------------
    def fetch_latest(self, job_id: str) -> None:
        """A first reader here: offer it the latest preview Redis keeps, if any."""
        self._spawn(self._fetch(job_id))

    async def _fetch(self, job_id: str) -> None:
        try:
            raw = await self._redis.get(self._keys.preview(job_id))
        except Exception:  # noqa: BLE001
            return
        if raw:
            self._receive(raw)

    async def _listen(self) -> None:
        reconnect = Reconnecting()
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                reconnect.up()
                async for msg in pubsub.listen():
                    if msg.get("type") == "message":
                        self._receive(msg["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - resubscribe whatever broke
                log.warning("preview subscription lost (%s); resubscribing", exc)
                await reconnect.pause()
            finally:
                try:
                    await pubsub.aclose()
                except Exception:  # noqa: BLE001
                    pass

    def _receive(self, raw: str | bytes) -> None:
        try:
            origin, job_id, event = _decode(raw)
        except (ValueError, KeyError, TypeError):
            return
        if origin != self._origin:
            self._hub.deliver(job_id, event)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _encode(origin: str, job_id: str, event: PreviewEvent) -> bytes:
    p = event.preview
    return orjson.dumps({"origin": origin, "job": job_id, "n": event.n, "time": event.time, "node": p.node,
                         "node_type": p.node_type, "value": p.value, "max": p.max, "mime": p.mime,
                         "image": base64.b64encode(p.image).decode()})


def _decode(raw: str | bytes) -> tuple[str, str, PreviewEvent]:
    d = orjson.loads(raw)
    preview = Preview(node=d["node"], node_type=d["node_type"], value=d["value"], max=d["max"], mime=d["mime"],
                      image=base64.b64decode(d["image"]))
    return d["origin"], d["job"], PreviewEvent(n=int(d["n"]), time=float(d["time"]), preview=preview)
