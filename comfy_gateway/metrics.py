"""Prometheus metrics (GET /metrics): jobs by outcome and by status, queue depths, stage
durations, backend health and busy time, webhook and upload failures.

Counters and histograms are updated as things happen; what describes the present (jobs kept
per status, queue depths, busy workers, backends) is read from the runtime at each scrape, so
it can never drift from the truth.

For code elsewhere in the gateway (webhooks, S3 uploads...), module-level functions count
against the running gateway's registry without passing anything around:

    from comfy_gateway import metrics
    metrics.webhook_failed()     # a webhook delivery gave up (after its retries)
    metrics.upload_failed()      # an output could not be stored (S3 or other storage)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .jobs.model import Job, JobStatus
from .jobs.usage import usage_of

# The *_created series (a timestamp per label set) double the output and no dashboard reads them.
disable_created_metrics()

# From a 5 ms preprocess to an hour-long video generation.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
TERMINAL = ("completed", "failed", "cancelled", "timed_out")
FAILURE_KINDS = ("rejected", "execution", "interrupted", "backend", "internal")
STAGES = ("preprocess", "generation", "postprocess")
# Which span of Job.durations() is the wait in front of each stage.
WAITS = {"preprocess": "queue_wait", "generation": "generation_wait", "postprocess": "postprocess_wait"}


@dataclass
class Snapshot:
    """The present, read from the runtime just before a scrape renders."""

    jobs: dict[str, int] = field(default_factory=dict)
    queue_depth: dict[str, int] = field(default_factory=dict)
    workers: dict[str, int] = field(default_factory=dict)
    busy: dict[str, int] = field(default_factory=dict)
    # backend name -> (up, in_flight, busy_seconds)
    backends: dict[str, tuple[bool, int, float]] = field(default_factory=dict)


class _Present:
    """A collector yielding the latest Snapshot (prometheus-client calls collect() on render)."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()

    def collect(self) -> Iterable[Metric]:
        s = self.snapshot
        jobs = GaugeMetricFamily("comfy_gateway_jobs", "Jobs the store keeps now, by status", labels=["status"])
        for status, n in s.jobs.items():
            jobs.add_metric([status], n)
        depth = GaugeMetricFamily("comfy_gateway_queue_depth", "Jobs waiting in each stage's queue",
                                  labels=["stage"])
        workers = GaugeMetricFamily("comfy_gateway_stage_workers", "Workers of each stage", labels=["stage"])
        busy = GaugeMetricFamily("comfy_gateway_stage_busy_workers", "Workers of each stage working on a job now",
                                 labels=["stage"])
        for stage in STAGES:
            depth.add_metric([stage], s.queue_depth.get(stage, 0))
            workers.add_metric([stage], s.workers.get(stage, 0))
            busy.add_metric([stage], s.busy.get(stage, 0))
        up = GaugeMetricFamily("comfy_gateway_backend_up", "1 while the gateway's websocket to the ComfyUI is "
                               "connected", labels=["backend"])
        in_flight = GaugeMetricFamily("comfy_gateway_backend_in_flight", "Prompts the gateway has on the ComfyUI "
                                      "now (running or in its queue)", labels=["backend"])
        busy_time = CounterMetricFamily("comfy_gateway_backend_busy_seconds", "Seconds during which the ComfyUI "
                                        "had at least one of our prompts", labels=["backend"])
        for name, (is_up, n, seconds) in s.backends.items():
            up.add_metric([name], 1 if is_up else 0)
            in_flight.add_metric([name], n)
            busy_time.add_metric([name], seconds)
        yield from (jobs, depth, workers, busy, up, in_flight, busy_time)


class Metrics:
    """One gateway's metrics, in a registry of its own (two apps in one process never mix)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.submitted = Counter("comfy_gateway_jobs_submitted", "Jobs accepted", registry=r)
        self.finished = Counter("comfy_gateway_jobs_finished", "Jobs that ended, by outcome", ["status"],
                                registry=r)
        self.failures = Counter("comfy_gateway_job_failures", "Failed jobs by error kind (rejected, execution, "
                                "interrupted, backend, internal)", ["kind"], registry=r)
        self.stage_seconds = Histogram("comfy_gateway_stage_duration_seconds", "Time a stage's worker spent on "
                                       "one job", ["stage"], buckets=BUCKETS, registry=r)
        self.wait_seconds = Histogram("comfy_gateway_stage_wait_seconds", "Time a job waited in a stage's queue",
                                      ["stage"], buckets=BUCKETS, registry=r)
        self.job_seconds = Histogram("comfy_gateway_job_duration_seconds", "Submission to end, by outcome",
                                     ["status"], buckets=BUCKETS, registry=r)
        self.webhook_failures = Counter("comfy_gateway_webhook_failures", "Webhook deliveries that failed",
                                        registry=r)
        self.upload_failures = Counter("comfy_gateway_upload_failures", "Outputs that could not be stored "
                                       "(S3 or other storage)", registry=r)
        # Per API key name (never the key): what /usage sums, as counters of this process.
        self.key_submitted = Counter("comfy_gateway_key_jobs_submitted", "Jobs accepted, by key name", ["key"],
                                     registry=r)
        self.key_finished = Counter("comfy_gateway_key_jobs_finished", "Jobs that ended, by key name and outcome",
                                    ["key", "status"], registry=r)
        self.key_queue_seconds = Counter("comfy_gateway_key_queue_seconds", "Seconds jobs waited in the "
                                         "gateway's queues, by key name", ["key"], registry=r)
        self.key_gpu_seconds = Counter("comfy_gateway_key_gpu_seconds", "Seconds jobs spent on a backend, "
                                       "by key name", ["key"], registry=r)
        self.key_output_bytes = Counter("comfy_gateway_key_output_bytes", "Bytes of outputs stored, by key name",
                                        ["key"], registry=r)
        for status in TERMINAL:  # present at 0 from the start, so rates and alerts work at once
            self.finished.labels(status)
            self.job_seconds.labels(status)
        for kind in FAILURE_KINDS:
            self.failures.labels(kind)
        for stage in STAGES:
            self.stage_seconds.labels(stage)
            self.wait_seconds.labels(stage)
        self.present = _Present()
        r.register(self.present)  # type: ignore[arg-type]
        ProcessCollector(registry=r)  # memory, CPU, open files of this process

    def job_changed(self, job: Job, previous: JobStatus | None) -> None:
        """A store transition listener: counts submissions and outcomes, times the waits."""
        if previous is None:
            self.submitted.inc()
            self.key_submitted.labels(job.owner or "anonymous").inc()
            return
        if not job.status.terminal:
            return
        status = job.status.value
        self.finished.labels(status).inc()
        used = usage_of(job)
        self.key_finished.labels(used.key, status).inc()
        self.key_queue_seconds.labels(used.key).inc(used.queue_seconds)
        self.key_gpu_seconds.labels(used.key).inc(used.gpu_seconds)
        self.key_output_bytes.labels(used.key).inc(used.output_bytes)
        if job.status is JobStatus.failed:
            self.failures.labels(job.error.kind if job.error else "internal").inc()
        durations = job.durations()
        if durations["total"] is not None:
            self.job_seconds.labels(status).observe(durations["total"])
        for stage, span in WAITS.items():
            if durations[span] is not None:
                self.wait_seconds.labels(stage).observe(durations[span])

    def stage_done(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(stage).observe(seconds)


_active = Metrics()  # replaced by the running gateway's; calls before that count harmlessly


def install(m: Metrics) -> None:
    """Make `m` the registry the module-level functions count into (the runtime does this)."""
    global _active
    _active = m


def webhook_failed() -> None:
    """Count one webhook delivery that failed for good (call once per delivery, after retries)."""
    _active.webhook_failures.inc()


def upload_failed() -> None:
    """Count one output that could not be stored (S3 upload or other storage), after retries."""
    _active.upload_failures.inc()
