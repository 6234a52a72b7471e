"""The GPU fleet's upkeep, built from the settings: one supervisor per backend (warm-up,
circuit breaker probes, GPU faults latched until a restart), the policy that reads each
generation's outcome, and their metrics."""

from __future__ import annotations

from typing import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from ..comfy.backend import Backend
from ..comfy.supervisor import Supervisor
from ..comfy.warmup import load_workflow
from ..jobs.store import JobStore
from ..settings import Settings
from .gpu_faults import GpuFaults

STATES = ("ready", "down", "warming", "cooling_down", "probing", "failed_until_restart")
WARMUP_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Fleet:
    def __init__(self, settings: Settings, backends: list[Backend], store: JobStore, registry: CollectorRegistry):
        warmup = load_workflow(settings.warmup_workflow) if settings.warmup_workflow else None
        self.backends = backends
        self.warmup_seconds = Histogram("comfy_gateway_warmup_seconds", "Duration of each warm-up run "
                                        "(WARMUP_WORKFLOW) on a backend", ["backend"], buckets=WARMUP_BUCKETS,
                                        registry=registry)
        self.oom_retries = Counter("comfy_gateway_oom_retries", "Jobs run once more after an out-of-memory "
                                   "error and POST /free", ["backend"], registry=registry)
        self.breaker_trips = Counter("comfy_gateway_breaker_trips", "Times a backend's circuit breaker took it "
                                     "out of rotation", ["backend"], registry=registry)
        for b in backends:
            self.warmup_seconds.labels(b.name)
            self.oom_retries.labels(b.name)
            self.breaker_trips.labels(b.name)
        registry.register(_StateCollector(backends))  # type: ignore[arg-type]
        self.supervisors = {
            b.name: Supervisor(b, warmup=warmup, warmup_timeout=settings.warmup_timeout,
                               breaker_threshold=settings.breaker_threshold,
                               breaker_cooldown=settings.breaker_cooldown,
                               on_warmup=lambda backend, s: self.warmup_seconds.labels(backend.name).observe(s))
            for b in backends
        }
        self.faults = GpuFaults(store, self.supervisors,
                                on_oom_retry=lambda b: self.oom_retries.labels(b.name).inc(),
                                on_trip=lambda b: self.breaker_trips.labels(b.name).inc())

    async def stop(self) -> None:
        for supervisor in self.supervisors.values():
            await supervisor.stop()

    def ready_backends(self) -> int:
        return sum(1 for b in self.backends if b.in_rotation)


class _StateCollector:
    """Each backend's rotation state, read at each scrape."""

    def __init__(self, backends: list[Backend]):
        self._backends = backends

    def collect(self) -> Iterable[Metric]:
        state = GaugeMetricFamily("comfy_gateway_backend_state", "1 for the state each backend is in: ready, "
                                  "down, warming, cooling_down (circuit breaker open), probing, "
                                  "failed_until_restart (fatal GPU error)", labels=["backend", "state"])
        rotation = GaugeMetricFamily("comfy_gateway_backend_in_rotation", "1 while the backend takes jobs",
                                     labels=["backend"])
        failures = GaugeMetricFamily("comfy_gateway_backend_consecutive_failures", "Backend-caused failures in "
                                     "a row (the circuit breaker opens at BREAKER_THRESHOLD)", labels=["backend"])
        for b in self._backends:
            now = b.rotation.state(b.connected.is_set())
            for s in STATES:
                state.add_metric([b.name, s], 1 if s == now else 0)
            rotation.add_metric([b.name], 1 if b.in_rotation else 0)
            failures.add_metric([b.name], b.rotation.breaker.failures)
        yield from (state, rotation, failures)
