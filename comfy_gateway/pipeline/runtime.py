"""The running gateway: store, backends, the three worker pools, and what the API asks of them."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import math
import time
import uuid
from typing import Any, Callable

from .. import metrics
from ..comfy.object_info import ObjectInfoCache
from ..access.keys import ANONYMOUS, ApiKey, KeyRing
from ..comfy.pool import BackendPool
from ..inputs.resolver import InputResolver
from ..inputs.inline import store_big_inline
from ..jobs.factory import make_store
from ..jobs.following import JobEvents, Wake
from ..jobs.model import Job, JobStatus, WebhookState
from ..jobs.sealing import SecretBox
from ..jobs.store import STAGES, JobStore
from ..logs import job_context
from ..outputs.local import LocalStorage
from ..outputs.retention import expire_local_outputs
from ..outputs.progress_webhooks import ProgressWebhooks
from ..outputs.s3_lazy import S3Storage
from ..outputs.webhooks import WebhookSender
from ..settings import Settings
from ..workflows.checker import WorkflowChecker
from ..workflows.registry import ModifierRegistry
from .cancel import AlreadyEnded, Canceller
from .deadlines import Deadlines
from .deliveries import counted
from .estimates import StageStats, estimate_wait
from .failures import fail_job, job_error
from .fleet import Fleet
from .generation import Generation
from .idempotency import DuplicateRequest, job_id_for, request_hash
from .model_inputs import INPUTS_CHECKED, ModelInputs
from .observe import log_transition
from .output_plan import seal_request
from .postprocess import Postprocess
from .preprocess import Preprocess
from .preview_hub import PreviewHub
from .preview_relay import RedisPreviewRelay
from .queue_places import Place, queue_places
from .router import BackendRouter
from .waiting import wait_until
from .workers import WorkerPool

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings, store: JobStore | None = None,
                 render: Callable[[Job], dict[str, Any]] | None = None):
        """`render` turns a job into the result object webhooks carry (the API's renderer,
        with output links based at PUBLIC_URL)."""
        self.settings = settings
        self.keys = KeyRing(settings.api_keys_file, settings.api_key_list)
        self.store: JobStore = store or make_store(settings)
        self.pool = BackendPool(settings.backend_urls, timeout=settings.backend_timeout,
                                lost_after=settings.backend_lost_after,
                                reconcile_interval=settings.reconcile_interval,
                                labels=[b.label for b in settings.backends])
        self.storage = LocalStorage(settings.output_dir)
        key = settings.secrets_key.get_secret_value()
        self.secrets = SecretBox(base64.b64decode(key) if key else None)
        self.s3 = S3Storage(settings, settings.network_policy)
        self.webhooks = WebhookSender(settings, self.store, render or (lambda job: job.model_dump(mode="json")))
        # Every terminal transition, whoever makes it (a stage, a cancel, a timeout), passes here.
        self.store.add_listener(lambda job, previous: self.webhooks.on_terminal(job) if job.status.terminal else None)
        self.modifiers = ModifierRegistry.load(settings.modifiers_dir, settings.workflows_dir)
        self.inputs = InputResolver(settings)
        # Would a backend accept a workflow? Asked before it is queued (see workflows/checker.py).
        self.checker = WorkflowChecker(self.pool, ObjectInfoCache(settings.backend_timeout),
                                       enabled=settings.validate_workflows)
        self.generation: Generation | None = None
        self.preprocess: Preprocess | None = None
        self.models: ModelInputs | None = None
        self.router: BackendRouter | None = None
        self.stats = StageStats()
        self.pools: dict[str, list[WorkerPool]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.canceller = Canceller(self.store, self.pool)
        self.deadlines = Deadlines(self.store, self._expire, settings.sweep_interval)
        self.draining = False  # after SIGTERM: no new jobs, finish what is in flight
        self.metrics = metrics.Metrics()
        metrics.install(self.metrics)
        self.store.add_listener(self.metrics.job_changed)
        self.store.add_listener(log_transition)
        self.previews = PreviewHub()
        self.store.add_listener(
            lambda job, previous: self.previews.forget(job.id) if previous is JobStatus.generating else None)
        self.preview_relay: RedisPreviewRelay | None = None
        self.fleet: Fleet | None = None
        self.event_webhooks = ProgressWebhooks(self.webhooks, self.store)
        self.store.add_listener(self.event_webhooks.on_created)
        self.webhooks.before_final = self.event_webhooks.before_final

    async def start(self) -> None:
        self.settings.output_dir.mkdir(parents=True, exist_ok=True)
        await self.store.start()
        if self.store.shared:
            self.preview_relay = RedisPreviewRelay(self.store.redis, self.store.keys, self.previews)  # type: ignore[attr-defined]
            await self.preview_relay.start()
        await self.pool.start()
        # Before any socket connects (their first change event starts the warm-up).
        self.fleet = Fleet(self.settings, self.pool.backends, self.store, self.metrics.registry)
        await self.inputs.start()
        s, store = self.settings, self.store
        self.models = ModelInputs(s, self.pool.backends)
        await self.models.start()

        def record(stage: str, seconds: float) -> None:
            self.stats.record(stage, seconds)
            self.metrics.stage_done(stage, seconds)
        if store.shared and not s.secrets_key.get_secret_value():
            log.warning("API_CACHE=redis without SECRETS_KEY: credentials sealed by this process "
                        "cannot be opened by another one; set the same SECRETS_KEY on every process")

        def pool(stage: str, size: int, handler, take=None, **kw) -> WorkerPool:
            # Each taking is counted in the store: a job whose every taker died is failed.
            take = take or counted(store, stage, lambda: store.dequeue(stage), s.max_deliveries, self._give_up)
            return WorkerPool(stage, size, take, handler, record,
                              release=lambda job_id: store.ack(stage, job_id),
                              renew=lambda job_id: store.renew(stage, job_id),
                              renew_every=s.lease_seconds / 3, **kw)

        self.preprocess = Preprocess(store, self.modifiers, self.inputs, self.checker, self.models)
        self.pools["preprocess"] = [pool("preprocess", s.preprocess_workers, self.preprocess)]
        # One generation pool, GENERATION_WORKERS slots per backend; the router sends each job
        # to the least-loaded backend in rotation (see router.py).
        router = self.router = BackendRouter(self.pool.backends, s.generation_workers)
        self.generation = Generation(store, router, self.inputs, s.backend_lost_after, self.models,
                                     faults=self.fleet.faults, previews=self.previews)
        self.pools["generation"] = [pool(
            "generation", router.total_slots, self.generation,
            take=lambda: router.gated_take(counted(store, "generation", lambda: store.dequeue("generation"),
                                                   s.max_deliveries, self._give_up)))]
        self.pools["postprocess"] = [pool("postprocess", s.postprocess_workers,
                                          Postprocess(store, self.pool, self.storage, self.s3, self.secrets, s))]
        await self.webhooks.start()
        for pools in self.pools.values():
            for p in pools:
                p.start()
        self._sweeper = asyncio.create_task(self._sweep())
        self.deadlines.start()

    async def stop(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        await self.deadlines.stop()
        for pools in self.pools.values():
            for p in pools:
                await p.stop()
        await self.event_webhooks.stop()
        await self.webhooks.stop()
        await self.inputs.stop()
        if self.models is not None:
            await self.models.stop()
        if self.fleet is not None:
            await self.fleet.stop()
        await self.pool.stop()
        if self.preview_relay is not None:
            await self.preview_relay.stop()
        await self.store.close()

    async def drain(self, grace: float) -> None:
        """Stop taking jobs, give those in flight `grace` seconds to finish, then account for
        the rest. With a shared store they are handed back: the store gives a job whose taker
        never acked it to another process. Alone in memory nobody could take them over, so
        they are failed with a message that says why, never silently lost."""
        self.draining = True
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not await self._idle():
            await asyncio.sleep(0.05)  # shutdown only: a short poll keeps this independent of every stage
        for pools in self.pools.values():
            for p in pools:
                await p.stop()
        if self.store.shared:
            # Whatever this process still held goes back to the others now, not a lease later.
            await self.store.hand_back_all()
        else:
            for job_id in await self.store.unfinished():
                with job_context(job_id):
                    await self._fail_at_shutdown(job_id)

    async def _fail_at_shutdown(self, job_id: str) -> None:
        """Fail a job nobody will take over, and withdraw its prompt from ComfyUI, where it would
        otherwise run for nobody."""
        exc = RuntimeError("the gateway shut down before this job finished (SIGTERM); submit it again")
        try:
            await self.canceller.stop(job_id, JobStatus.failed, str(exc), job_error(exc))
        except (KeyError, AlreadyEnded):
            pass
        except Exception:  # noqa: BLE001 - the next job must still be accounted for
            log.exception("could not fail job %s at shutdown", job_id)
            await fail_job(self.store, job_id, exc)

    async def _idle(self) -> bool:
        busy = sum(p.busy for pools in self.pools.values() for p in pools)
        if self.store.shared:
            return busy == 0
        return busy == 0 and not any((await self.store.queue_sizes()).values())

    async def _sweep(self) -> None:
        s = self.settings
        interval = min(60.0, s.result_ttl, s.local_output_ttl or 60.0, s.asset_ttl)
        while True:
            await asyncio.sleep(max(interval, 0.5))
            try:
                await self.store.expire(time.time() - s.result_ttl)
                await asyncio.to_thread(self.inputs.expire_assets)
            except Exception:  # noqa: BLE001
                log.exception("expiring old results or assets failed")
            try:
                await expire_local_outputs(self.storage.root, self.store, s.local_output_ttl)
            except Exception:  # noqa: BLE001
                log.exception("expiring old local outputs failed")

    # -- what the API asks ------------------------------------------------------------------
    async def submit(self, payload: dict[str, Any], key: ApiKey = ANONYMOUS) -> tuple[Job, bool]:
        """Create and queue a job for `key`; (job, created). The same request_id with the same
        payload gives back the existing job; with another payload it is a DuplicateRequest.
        Raises KeyQueueFull when the key has max_queued jobs that have not ended."""
        job, created, _ = await self.submit_followed(payload, key, None)
        return job, created

    async def submit_followed(self, payload: dict[str, Any], key: ApiKey,
                              follow: Wake | None) -> tuple[Job, bool, JobEvents | None]:
        """submit(), and with `follow` the job's events (store.events, woken as `follow` says)
        followed from before the job is created or read: whoever waits on it then needs no
        first look at the store (a round trip in Redis). The caller closes them."""
        # Big inline inputs become assets first: the same bytes give the same reference, so the
        # request's identity (its hash) is what it was, and the record stays small.
        payload = await store_big_inline(self.inputs, payload)
        digest = request_hash(payload)
        named = job_id_for(payload.get("request_id"), key.name if self.keys.scoped else None)
        while True:
            job_id = named or str(uuid.uuid4())  # a fresh id: nothing to look up (create refuses a clash)
            events = self.store.events(job_id, wake=follow, look_first=False) if follow else None
            made = None
            try:
                made = await self._create(payload, key, job_id, digest, named is not None)
            finally:
                if made is None and events is not None:  # refused, or lost a race for the id
                    events.close()
            if made is not None:
                return *made, events
            # lost a race with the same id: look again

    async def _create(self, payload: dict[str, Any], key: ApiKey, job_id: str, digest: str,
                      named: bool) -> tuple[Job, bool] | None:
        """(job, created): the job a request_id names if it exists, else a new job created under
        that id; None if another job took the id meanwhile."""
        if named:
            existing = await self.store.get(job_id)
            if existing is not None:
                if existing.request_hash == digest:
                    return existing, False
                raise DuplicateRequest(job_id)
        timeout = float(payload.get("timeout") or self.settings.job_timeout)
        # Stored with its credentials sealed; the hash above saw them in the clear, so the same
        # request with other keys is another request.
        stored = seal_request(payload, job_id, self.secrets)
        hook = WebhookState() if self.webhooks.target(payload) else None
        job = Job(id=job_id, request=stored, request_hash=digest, webhook=hook, deadline=time.time() + timeout,
                  owner=key.name, request_id=payload.get("request_id"), priority=int(payload.get("priority") or 0))
        # The time limit enters the store with the job (create), so no job exists without one.
        if hook is not None:
            await self.webhooks.owe(job.id, job.deadline)
        # Most jobs have nothing slow to prepare (no input to fetch): prepared now, they skip the
        # preprocess queue (one hand-over and one store write fewer on their way).
        prepared = await self.preprocess.prepare_now(job) if self.preprocess is not None else None
        claims = self.generation.claims if self.generation is not None else None
        if prepared is not None and claims is not None:  # its run's first write, with the create
            prepared = dataclasses.replace(prepared, claim=claims.offer(job_id))
        made: Job | None = None
        try:
            with job_context(job_id):
                made = job = await self.store.create(job, max_waiting=self.settings.max_queue_size,
                                                     max_owned=key.max_queued, prepared=prepared)
        except KeyError:  # a job of that id exists now (the same request_id, sent twice at once)
            return None
        finally:
            if claims is not None:
                claims.created(job_id, made)
        self.deadlines.expect(job.deadline)
        return job, True

    async def cancel(self, job_id: str) -> Job:
        """Raises KeyError for an unknown job, AlreadyEnded for one that ended."""
        with job_context(job_id):
            return await self.canceller.stop(job_id, JobStatus.cancelled, "cancelled by the client")

    async def _give_up(self, job_id: str, message: str, error) -> None:
        """End a job taken too often (pipeline/deliveries.py), withdrawing it from ComfyUI too."""
        await self.canceller.stop(job_id, JobStatus.failed, message, error)

    async def _expire(self, job_id: str) -> None:
        job = await self.store.get(job_id)
        if job is None or job.status.terminal or job.deadline is None:
            return
        limit = job.deadline - job.created_at
        try:
            with job_context(job_id):
                await self.canceller.stop(job_id, JobStatus.timed_out, f"timed out after {round(limit, 2):g} s")
        except (KeyError, AlreadyEnded):
            pass

    async def wait_until_done(self, job_id: str, timeout: float, known: Job | None = None,
                              events: JobEvents | None = None) -> Job | None:
        """Wait, woken by the job's events, until it ends or the timeout passes. `known`: the
        job as the caller last read it (saves reading it first; events after it are seen);
        `events`: the job followed since before that (submit_followed)."""
        return await wait_until(self.store, job_id, lambda status: status.terminal, timeout, known=known,
                                end_only=True, events=events)

    async def wait_until_admitted(self, job_id: str, timeout: float, known: Job | None = None) -> Job | None:
        """Wait until the job is past preprocessing (its workflow built and every input fetched
        and checked) or has ended, so that the API can answer a refused input with a 4xx; or
        until preprocessing marks its inputs checked while a long model download goes on.
        `known`: the job as the caller read it (one created past preprocessing needs no read)."""
        return await wait_until(
            self.store, job_id, lambda status: status not in (JobStatus.queued, JobStatus.preprocessing), timeout,
            known=known, checked=lambda job: INPUTS_CHECKED in job.marks)

    def workers(self) -> dict[str, int]:
        connected = sum(1 for b in self.pool.backends if b.connected.is_set())
        return {
            "preprocess": self.settings.preprocess_workers,
            "generation": self.settings.generation_workers * max(connected, 1),
            "postprocess": self.settings.postprocess_workers,
        }

    async def queue_info(self) -> dict[str, Any]:
        sizes = await self.store.queue_sizes()
        workers = self.workers()
        stages = {}
        for stage in STAGES:
            busy = sum(p.busy for p in self.pools.get(stage, []))
            mean = self.stats.mean(stage)
            stages[stage] = {
                "waiting": sizes[stage], "workers": workers[stage], "busy": busy,
                "mean_duration": round(mean, 6) if mean is not None else None,
                "measured_jobs": self.stats.count[stage],
            }
        waiting = sum(sizes.values())
        return {
            "queues": stages, "waiting": waiting, "max_queue_size": self.settings.max_queue_size,
            "estimated_wait_time": estimate_wait("preprocess", sizes["preprocess"], sizes, workers, self.stats),
            "backends": self.backends_info(),
            "inputs": self.inputs.stats(),
            "models": self.models.stats() if self.models else None,
        }

    def backends_info(self) -> list[dict[str, Any]]:
        """Each backend as this process sees it: in rotation or not, and its load."""
        router, gen = self.router, self.generation
        return [
            {"name": b.name, "label": b.label, "connected": b.connected.is_set(), "in_rotation": b.in_rotation,
             "state": b.rotation.state(b.connected.is_set()),
             "in_flight": b.in_flight, "slots": self.settings.generation_workers,
             "slots_in_use": router.in_use[b.name] if router else 0,
             "queue_remaining": b.queue_remaining, "down_since": b.down_since, "last_error": b.last_error,
             "inputs_uploaded": gen.uploads[b.name].uploads if gen else 0,
             "models": self.models.delivery.models(b.name) if self.models else []}
            for b in self.pool.backends
        ]

    async def queue_position(self, job: Job) -> Place:
        """Where the job waits now: its stage queue, its place there and the wait ahead."""
        return (await queue_places(self, [job]))[job.id]

    def retry_after(self) -> int:
        """Seconds until a slot in the queue should free up, from measured durations."""
        means = [self.stats.mean(s) or 0.0 for s in STAGES]
        workers = self.workers()
        per_slot = max(m / max(workers[s], 1) for m, s in zip(means, STAGES))
        return max(1, math.ceil(per_slot))
