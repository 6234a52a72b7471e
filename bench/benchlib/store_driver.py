"""The store calls of fast jobs, alone: run as a process of its own by the `store-path` part
(store_path.py), with PYTHONPATH on the gateway code under test. Prints one JSON line.

Each job makes the calls a job prepared on arrival makes in the gateway, in the same order
(api/generate.py, pipeline/generation.py, pipeline/postprocess.py): followed from before its
create; created past preprocess into the generation queue, where an idle taker waits, and
already "running on" its backend (pipeline/claims.py; a revision without claims has its taker
write that); read by that taker, handed to postprocess; read there and completed. On Redis that
is the gateway's script calls per job (CREATE and an UPDATE, and an UPDATE more without claims;
MONITOR shows the same sequence as a gateway in front of the fake ComfyUI). No HTTP, no ComfyUI:
what is measured is the store's own cost, which the latency and throughput parts cannot separate
from the noise of everything else on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import time
import uuid
from typing import Any

from comfy_gateway.jobs.model import Job, JobStatus
from comfy_gateway.jobs.store import Passing, Prepared

try:  # a revision that creates a job taken at once "running on" its backend (pipeline/claims.py)
    from comfy_gateway.jobs.store import Claim
except ImportError:
    Claim = None

from benchlib.workloads import empty_save, padded

OUTPUTS = [{"node_id": "2", "filename": "bench_00001_.png", "subfolder": "", "type": "output"}]


CLAIMED: dict[str, Any] = {}  # job id -> its watch, made before a create that wrote its claim


async def _generation(store) -> None:
    while True:
        job_id = await store.dequeue("generation")
        job = await store.get(job_id)
        claimed = CLAIMED.pop(job_id, None)
        async with claimed or store.events(job_id, wake="end", look_first=False):
            if job.backend != "bench":
                job = await store.update(job_id, message="running on bench", backend="bench",
                                         marks={"generation_started": time.time()}, attempts=job.attempts + 1)
            await store.advance(job_id, "postprocess", status=JobStatus.postprocessing,
                                message="fetching 1 output(s)", marks={"generation_finished": time.time()},
                                comfy_outputs=OUTPUTS)
        await store.ack("generation", job_id)


async def _postprocess(store) -> None:
    while True:
        job_id = await store.dequeue("postprocess")
        await store.get(job_id)
        await store.update(job_id, status=JobStatus.completed, message="completed with 1 output(s)",
                           marks={"postprocess_finished": time.time()})
        await store.ack("postprocess", job_id)


async def _one(store, workflow: dict[str, Any]) -> None:
    job = Job(id=str(uuid.uuid4()), request={"workflow": workflow})
    now = time.time()
    prepared = Prepared(steps=(Passing(JobStatus.preprocessing, "preparing", {"preprocess_started": now}),
                               Passing(JobStatus.generating, "waiting for a free backend",
                                       {"preprocess_finished": now})),
                        fields={"workflow": workflow, "inputs": []}, stage="generation")
    if Claim is not None:
        CLAIMED[job.id] = store.events(job.id, wake="end", look_first=False)
        prepared = dataclasses.replace(prepared, claim=Claim(
            Passing(JobStatus.generating, "running on bench", {"generation_started": time.time()}),
            {"backend": "bench", "attempts": 1}))
    async with store.events(job.id, wake="end", look_first=False) as events:
        made = await store.create(job, prepared=prepared)
        if made.backend != "bench" and job.id in CLAIMED:
            CLAIMED.pop(job.id).close()
        async for event in events:
            if getattr(event, "status", None) in ("completed", "failed", "cancelled", "timed_out"):
                return


async def main(args: argparse.Namespace) -> dict[str, Any]:
    workflow = padded(empty_save("bench"), args.pad_nodes)  # with --pad-nodes 50, as big as a real one
    stats = None
    if args.store == "redis":
        from comfy_gateway.jobs.redis import RedisJobStore, connect

        from benchlib.redis_store import CommandStats

        store: Any = RedisJobStore(connect(args.redis_url), prefix=args.prefix)
        stats = CommandStats(args.redis_url)
    else:
        from comfy_gateway.jobs.memory import MemoryJobStore

        store = MemoryJobStore()
    await store.start()
    workers = [asyncio.create_task(_generation(store)), asyncio.create_task(_postprocess(store))]
    try:
        for _ in range(args.warmup):
            await _one(store, workflow)
        if stats is not None:
            stats.__enter__()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(args.jobs):
            await _one(store, workflow)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if stats is not None:
            stats.__exit__(None, None, None)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await store.close()
    out: dict[str, Any] = {"jobs": args.jobs, "cpu_ms": cpu / args.jobs * 1000, "wall_ms": wall / args.jobs * 1000}
    if stats is not None:
        out["redis"] = stats.per_job(args.jobs)
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--store", choices=("memory", "redis"), required=True)
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--prefix", default="cg-bench-store:")
    p.add_argument("--pad-nodes", type=int, default=0, help="unconnected nodes added to the workflow")
    try:
        import uvloop  # the loop the gateway runs on (uvicorn's default when it is installed)

        run: Any = uvloop.run
    except ImportError:
        run = asyncio.run
    print(json.dumps(run(main(p.parse_args()))))
